package cloudsource

import (
	"github.com/registry-adapter/registry-adapter/model"
)

// HealthConfig is the opt-in to a cloud's own health signal, under the key
// "health" of each cloud source; a source embeds it with `yaml:",inline"`
// beside the settings of its own signal (EC2 status checks, GCE backend
// services, Azure's Application Health extension). Off by default: health
// calls cost requests and permissions.
type HealthConfig struct {
	// Enabled turns the source's health signal on.
	Enabled bool `yaml:"enabled"`
}

// Verdict is what a cloud said about one instance's health at one refresh.
type Verdict struct {
	// Health is model.HealthPassing or model.HealthCritical: a definite
	// answer. model.HealthUnknown means the cloud gave none this time (no
	// data yet, insufficient data, the call failed): the last definite
	// answer stands.
	Health model.Health
	// Detail says why an instance is critical, for the log ("system
	// status impaired (reachability failed)").
	Detail string
}

// HealthBook remembers the last definite health the cloud reported for
// each instance, so that a failed, throttled or timed-out health call, or
// an answer without data, changes nothing that is served. An instance the
// cloud never gave a definite answer for is unknown, and served: the
// instance list, not the health API, decides what exists, and a health API
// that fails from the start must not empty the source.
//
// A HealthBook is used by one List at a time (poll never runs two
// concurrently); it is not safe for concurrent use.
type HealthBook struct {
	known map[string]Verdict
}

// NewHealthBook returns an empty book.
func NewHealthBook() *HealthBook { return &HealthBook{known: map[string]Verdict{}} }

// Record records what the cloud said about id this refresh; an unknown
// verdict keeps the last definite one.
func (b *HealthBook) Record(id string, v Verdict) {
	if v.Health == model.HealthPassing || v.Health == model.HealthCritical {
		b.known[id] = v
	}
}

// Get returns the last definite verdict for id, or an unknown one.
func (b *HealthBook) Get(id string) Verdict { return b.known[id] }

// Retain forgets the instances that are no longer listed (terminated,
// stopped, untagged): an instance that comes back starts unknown again.
func (b *HealthBook) Retain(listed map[string]bool) {
	for id := range b.known {
		if !listed[id] {
			delete(b.known, id)
		}
	}
}

// SkipUnhealthy is the skip reason of an instance left out for its health.
const SkipUnhealthy = "unhealthy"

// WithHealth applies an instance's health verdict to its mapping (names,
// reason and detail as a source's mapInstance returns them): for an
// instance that mapped (names not empty) it sets inst.Health and counts it
// in r.Health, and a critical one gets no names, the reason unhealthy and
// the verdict's detail. It is left out rather than sent as critical so
// that the adapter sees it removed, and the mass-deletion guard counts it
// like any other removal.
func (r *Result) WithHealth(v Verdict, inst *model.Instance, names []string, reason, detail string) ([]string, string, string) {
	if len(names) == 0 {
		return names, reason, detail
	}
	inst.Health = v.Health
	r.Health[v.Health]++
	if v.Health == model.HealthCritical {
		return nil, SkipUnhealthy, v.Detail
	}
	return names, reason, detail
}

// HealthStates are the values of the by-health gauge's "health" label.
var HealthStates = []model.Health{model.HealthPassing, model.HealthCritical, model.HealthUnknown}
