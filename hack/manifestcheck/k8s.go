package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/applyconfigurations"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	podutil "k8s.io/kubernetes/pkg/api/pod"
	"k8s.io/kubernetes/pkg/apis/apps"
	appsvalidation "k8s.io/kubernetes/pkg/apis/apps/validation"
	"k8s.io/kubernetes/pkg/apis/core"
	corevalidation "k8s.io/kubernetes/pkg/apis/core/validation"
	"k8s.io/kubernetes/pkg/apis/networking"
	netvalidation "k8s.io/kubernetes/pkg/apis/networking/validation"
	"k8s.io/kubernetes/pkg/apis/policy"
	policyvalidation "k8s.io/kubernetes/pkg/apis/policy/validation"
	"k8s.io/kubernetes/pkg/apis/rbac"
	rbacvalidation "k8s.io/kubernetes/pkg/apis/rbac/validation"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"
	sigsjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"

	// Register the built-in API groups the chart uses (types, defaults, conversions) with legacyscheme.
	_ "k8s.io/kubernetes/pkg/apis/apps/install"
	_ "k8s.io/kubernetes/pkg/apis/core/install"
	_ "k8s.io/kubernetes/pkg/apis/networking/install"
	_ "k8s.io/kubernetes/pkg/apis/policy/install"
	_ "k8s.io/kubernetes/pkg/apis/rbac/install"
)

var serviceMonitorGVK = monitoringv1.SchemeGroupVersion.WithKind(monitoringv1.ServiceMonitorsKind)
var prometheusRuleGVK = monitoringv1.SchemeGroupVersion.WithKind(monitoringv1.PrometheusRuleKind)
var certificateGVK = cmv1.SchemeGroupVersion.WithKind(cmv1.CertificateKind)
var issuerGVK = cmv1.SchemeGroupVersion.WithKind(cmv1.IssuerKind)

// doc is one YAML document of a rendered file.
type doc struct {
	where string // file#index
	gvk   schema.GroupVersionKind
	name  string
	json  []byte
	obj   runtime.Object // versioned, as written (no defaults)
}

func (d *doc) String() string { return fmt.Sprintf("%s (%s %s)", d.where, d.gvk.Kind, d.name) }

func checkManifests(files []string) error {
	var failed []string
	for _, file := range files {
		docs, errs := validateFile(file)
		if len(errs) > 0 {
			for _, e := range errs {
				fmt.Fprintf(os.Stderr, "  %s: %v\n", file, e)
			}
			failed = append(failed, file)
			continue
		}
		kinds := make([]string, 0, len(docs))
		for _, d := range docs {
			kinds = append(kinds, d.gvk.Kind+"/"+d.name)
		}
		fmt.Printf("ok %s: %d documents (%s)\n", file, len(docs), strings.Join(kinds, ", "))
	}
	if len(failed) > 0 {
		return fmt.Errorf("invalid: %s", strings.Join(failed, ", "))
	}
	return nil
}

// validateFile runs every check on the documents of one file.
func validateFile(file string) ([]*doc, []error) {
	tc := applyconfigurations.NewTypeConverter(clientgoscheme.Scheme)
	evaluator, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
	if err != nil {
		return nil, []error{err}
	}
	docs, errs := readDocs(file)
	for _, d := range docs {
		errs = append(errs, validateDoc(d, tc, evaluator)...)
	}
	if len(errs) == 0 {
		errs = crossCheck(docs)
	}
	return docs, errs
}

// readDocs splits a multi-document YAML file and decodes each document strictly into its typed object.
func readDocs(file string) ([]*doc, []error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, []error{err}
	}
	defer f.Close()
	strict := serializer.NewCodecFactory(legacyscheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var docs []*doc
	var errs []error
	for i := 0; ; i++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return docs, append(errs, fmt.Errorf("document %d: %w", i, err))
		}
		js, err := sigsyaml.YAMLToJSONStrict(raw) // duplicate keys are errors
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", i, err))
			continue
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
			continue // comments only
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", i, err))
			continue
		}
		d := &doc{where: fmt.Sprintf("%s#%d", file, i), gvk: u.GroupVersionKind(), name: u.GetName(), json: js}
		switch {
		case d.gvk == serviceMonitorGVK:
			sm := &monitoringv1.ServiceMonitor{}
			strictErrs, err := sigsjson.UnmarshalStrict(js, sm, sigsjson.DisallowUnknownFields)
			if err == nil {
				err = errors.Join(strictErrs...)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", d, err))
				continue
			}
			d.obj = sm
		case d.gvk == certificateGVK || d.gvk == issuerGVK:
			// cert-manager's own Go types (its CRDs are not built in), decoded strictly.
			var obj runtime.Object = &cmv1.Certificate{}
			if d.gvk == issuerGVK {
				obj = &cmv1.Issuer{}
			}
			strictErrs, err := sigsjson.UnmarshalStrict(js, obj, sigsjson.DisallowUnknownFields)
			if err == nil {
				err = errors.Join(strictErrs...)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", d, err))
				continue
			}
			d.obj = obj
		case d.gvk == prometheusRuleGVK:
			pr := &monitoringv1.PrometheusRule{}
			strictErrs, err := sigsjson.UnmarshalStrict(js, pr, sigsjson.DisallowUnknownFields)
			if err == nil {
				err = errors.Join(strictErrs...)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", d, err))
				continue
			}
			d.obj = pr
		case legacyscheme.Scheme.Recognizes(d.gvk):
			obj, _, err := strict.Decode(js, nil, nil)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", d, err))
				continue
			}
			d.obj = obj
		default:
			errs = append(errs, fmt.Errorf("%s: no schema for %s: add its validation to hack/manifestcheck", d, d.gvk))
			continue
		}
		docs = append(docs, d)
	}
	return docs, errs
}

// validateDoc runs the schema, the API server's validation and Pod Security on one document.
func validateDoc(d *doc, tc managedfields.TypeConverter, psa psapolicy.Evaluator) []error {
	var errs []error
	fail := func(what string, err error) { errs = append(errs, fmt.Errorf("%s: %s: %w", d, what, err)) }
	if sm, ok := d.obj.(*monitoringv1.ServiceMonitor); ok {
		fl := metavalidation.ValidateObjectMeta(&sm.ObjectMeta, true, metavalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
		if len(sm.Spec.Endpoints) == 0 {
			fl = append(fl, field.Required(field.NewPath("spec", "endpoints"), ""))
		}
		if err := fl.ToAggregate(); err != nil {
			fail("validation", err)
		}
		return errs
	}

	if pr, ok := d.obj.(*monitoringv1.PrometheusRule); ok {
		return validateRules(pr)
	}
	if c, ok := d.obj.(*cmv1.Certificate); ok {
		return validateCertificate(d, c)
	}
	if i, ok := d.obj.(*cmv1.Issuer); ok {
		return validateIssuer(d, i)
	}

	// The structural schema, on the document as written (not the typed object, which would hide unknown
	// fields that strict decoding already reports).
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(d.json); err != nil {
		fail("schema", err)
	} else if _, err := tc.ObjectToTyped(u); err != nil {
		fail("schema", err)
	}

	// Defaults, then the internal version, then the API server's validation for the kind.
	versioned := d.obj.DeepCopyObject()
	legacyscheme.Scheme.Default(versioned)
	internal, err := legacyscheme.Scheme.ConvertToVersion(versioned, runtime.InternalGroupVersioner)
	if err != nil {
		fail("conversion", err)
		return errs
	}
	var fl field.ErrorList
	switch o := internal.(type) {
	case *apps.Deployment:
		fl = appsvalidation.ValidateDeployment(o, podutil.GetValidationOptionsFromPodTemplate(&o.Spec.Template, nil))
	case *core.Service:
		// The API server's service storage copies clusterIP into clusterIPs before it validates.
		if o.Spec.ClusterIP != "" && len(o.Spec.ClusterIPs) == 0 {
			o.Spec.ClusterIPs = []string{o.Spec.ClusterIP}
		}
		fl = corevalidation.ValidateServiceCreate(o)
	case *core.ConfigMap:
		fl = corevalidation.ValidateConfigMap(o)
	case *core.Namespace: // the Kubernetes sink's output namespace
		fl = corevalidation.ValidateNamespace(o)
	case *core.ServiceAccount:
		fl = corevalidation.ValidateServiceAccount(o)
	case *core.Secret:
		fl = corevalidation.ValidateSecret(o)
	case *policy.PodDisruptionBudget:
		fl = policyvalidation.ValidatePodDisruptionBudget(o, policyvalidation.PodDisruptionBudgetValidationOptions{})
	case *networking.NetworkPolicy:
		fl = netvalidation.ValidateNetworkPolicy(o, netvalidation.NetworkPolicyValidationOptions{})
	case *rbac.Role: // the Kubernetes sink's
		fl = rbacvalidation.ValidateRole(o)
	case *rbac.RoleBinding:
		fl = rbacvalidation.ValidateRoleBinding(o)
	default:
		fail("validation", fmt.Errorf("no validation wired for %T: add it to hack/manifestcheck", internal))
	}
	if err := fl.ToAggregate(); err != nil {
		fail("API validation", err)
	}

	if dep, ok := versioned.(*appsv1.Deployment); ok {
		lv := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
		for _, r := range psa.EvaluatePod(lv, &dep.Spec.Template.ObjectMeta, &dep.Spec.Template.Spec) {
			if !r.Allowed {
				fail("pod security (restricted)", fmt.Errorf("%s: %s", r.ForbiddenReason, r.ForbiddenDetail))
			}
		}
	}
	return errs
}

// printConfig prints the adapter's config.yaml from the ConfigMap in file.
func printConfig(file string) error {
	docs, errs := readDocs(file)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var found []string
	for _, d := range docs {
		if cm, ok := d.obj.(*corev1.ConfigMap); ok {
			if c, ok := cm.Data["config.yaml"]; ok {
				found = append(found, c)
			}
		}
	}
	if len(found) != 1 {
		return fmt.Errorf("%s: want one ConfigMap with config.yaml, found %d", file, len(found))
	}
	fmt.Print(found[0])
	return nil
}
