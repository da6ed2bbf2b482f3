package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestKubeGroupsIsolated: an istiod of one test does not see what another
// test writes into the shared kube-apiserver (groupLabel). A Service is
// created in a namespace of another group, then one in this test's
// namespace; istiod's Service informer delivers the two in the order they
// were written, so once istiod holds its own, it has had the chance to take
// the other, and must not hold it, nor any Kubernetes Service outside its
// group (kubernetes.default, other tests' Services).
func TestKubeGroupsIsolated(t *testing.T) {
	t.Parallel()
	id := randomSuffix(t)
	own, other := "groups-own-"+id, "groups-other-"+id
	groupNamespace(t, own)
	labelNamespace(t, other, groupLabelPrefix+"AnotherTest"+id)
	p := startIstiod(t, meshNoSources)
	p.waitReady(t)

	k := kubeAPI(t)
	k.createService(t, other, "theirs", map[string]string{"app": "theirs"})
	k.createService(t, own, "mine", map[string]string{"app": "mine"})
	mine := "mine." + own + ".svc.cluster.local"
	eventually(t, 60*time.Second, "istiod holds the Service of its own group", func() error {
		if hosts := p.registryHosts(t); !slices.Contains(hosts, mine) {
			return fmt.Errorf("registry: %v", hosts)
		}
		return nil
	})
	for _, h := range p.registryHosts(t) {
		if h != mine && strings.HasSuffix(h, ".svc.cluster.local") {
			t.Errorf("istiod holds the Kubernetes Service %s, outside its test's namespaces", h)
		}
	}
}
