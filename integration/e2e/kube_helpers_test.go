package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/registry-adapter/registry-adapter/sinks/kube"
)

var (
	crdOnce sync.Once
	crdErr  error
	seGVR   = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "serviceentries"}
	weGVR   = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "workloadentries"}
	nsGVR   = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	crdGVR  = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// kubeREST is a client configuration for the harness's kube-apiserver.
func kubeREST(t *testing.T) *rest.Config {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.QPS, rc.Burst = 200, 400
	return rc
}

func kubeDynamic(t *testing.T) dynamic.Interface {
	t.Helper()
	c, err := dynamic.NewForConfig(kubeREST(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// istioCRDFile is crd-all.gen.yaml from the istio.io/istio module the harness
// builds istiod from (integration/istiod/build/go.mod), not a hand-written copy.
func istioCRDFile() (string, error) {
	var out bytes.Buffer
	env := []string{"GOFLAGS=-mod=readonly", "GOTOOLCHAIN=local"}
	if err := command(filepath.Join(repoRoot, "integration/istiod/build"), env, &out, "go", "list", "-m", "-f", "{{.Dir}}", "istio.io/istio"); err != nil {
		return "", err
	}
	return filepath.Join(strings.TrimSpace(out.String()), "manifests/charts/base/files/crd-all.gen.yaml"), nil
}

// installIstioCRDs creates Istio's CRDs in the shared kube-apiserver, once,
// and waits until ServiceEntry and WorkloadEntry are served.
func installIstioCRDs(t *testing.T) {
	t.Helper()
	crdOnce.Do(func() { crdErr = doInstallIstioCRDs(t) })
	if crdErr != nil {
		t.Fatal(crdErr)
	}
}

func doInstallIstioCRDs(t *testing.T) error {
	path, err := istioCRDFile()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	c := kubeDynamic(t)
	ctx := context.Background()
	n := 0
	for _, doc := range strings.Split(string(data), "\n---") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if obj == nil || obj["kind"] != "CustomResourceDefinition" {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if _, err := c.Resource(crdGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create CRD %s: %w", u.GetName(), err)
		}
		n++
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, gvr := range []schema.GroupVersionResource{seGVR, weGVR} {
		for {
			_, err := c.Resource(gvr).Namespace("default").List(ctx, metav1.ListOptions{Limit: 1})
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not served after installing %d CRDs from %s: %w", gvr.Resource, n, path, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("installed %d Istio CRDs from %s", n, path)
	return nil
}

// kubeNamespace creates a namespace for one test, puts it in the view of
// the test's istiods (groupNamespace) and, at its end, deletes the Istio
// objects in it (a bare kube-apiserver has no namespace controller to do it).
func kubeNamespace(t *testing.T, name string) {
	t.Helper()
	groupNamespace(t, name)
	t.Cleanup(func() { deleteIstioObjects(t, name) })
}

// groupNamespace creates namespace name if it does not exist and labels it
// with t's group key (groupLabel), so that the test's istiods watch what is
// in it; the label is removed at the test's end. A shared namespace
// (default, istio-system) may carry the keys of several tests.
func groupNamespace(t *testing.T, name string) {
	t.Helper()
	labelNamespace(t, name, groupLabel(t))
}

// labelNamespace is groupNamespace for any group's key.
func labelNamespace(t *testing.T, name, key string) {
	t.Helper()
	c := kubeDynamic(t).Resource(nsGVR)
	ctx := context.Background()
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": name, "labels": map[string]any{key: "true"}}}}
	_, err := c.Create(ctx, ns, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:"true"}}}`, key)
		_, err = c.Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	}
	if err != nil {
		t.Fatalf("namespace %s, label %s: %v", name, key, err)
	}
	t.Cleanup(func() {
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, key)
		if _, err := c.Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Logf("namespace %s: removing label %s: %v", name, key, err)
		}
	})
}

func deleteIstioObjects(t *testing.T, ns string) {
	c := kubeDynamic(t)
	for _, gvr := range []schema.GroupVersionResource{seGVR, weGVR} {
		if err := c.Resource(gvr).Namespace(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Logf("cleanup %s in %s: %v", gvr.Resource, ns, err)
		}
	}
}

// kubeNames lists the names of one kind in ns, as `kubectl get` would.
func kubeNames(t *testing.T, gvr schema.GroupVersionResource, ns string) []string {
	t.Helper()
	list, err := kubeDynamic(t).Resource(gvr).Namespace(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, u := range list.Items {
		out = append(out, u.GetName())
	}
	return sortStrings(out)
}

// gathered sums a metric's samples from a registry.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return gatheredWhere(t, reg, name, "", "")
}

// gatheredWhere sums the samples of name (counters, gauges, histogram
// counts) whose label has value; an empty label takes every series.
func gatheredWhere(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
				return l.GetName() == label && l.GetValue() == value
			}) {
				continue
			}
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// managers lists the field managers of an object.
func managers(u *unstructured.Unstructured) []string {
	var out []string
	for _, m := range u.GetManagedFields() {
		out = append(out, m.Manager+"/"+string(m.Operation))
	}
	return sortStrings(out)
}

var _ = kube.FieldManager
