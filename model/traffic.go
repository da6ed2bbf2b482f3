package model

import "time"

// Traffic is what a registry states about how requests to a service are
// spread beyond "any healthy instance": named subsets of its instances, how
// connections to it are balanced and opened, and HTTP routes that match
// requests and split them across subsets and other services. A service
// without it (nil) gets its registry's instances and nothing else; convert
// makes a DestinationRule of the first three and a VirtualService of the
// routes.
//
// Everything in it is already resolved by the source: a route's
// destinations are final hosts and subsets, with weights, so that the
// conversion needs no other service's traffic to translate this one's.
type Traffic struct {
	// Subsets are named groups of the service's instances.
	Subsets []Subset
	// LoadBalancer chooses an instance for each request or connection; nil:
	// the mesh's default.
	LoadBalancer *LoadBalancer
	// ConnectTimeout bounds opening a connection to an instance; 0: the
	// mesh's default.
	ConnectTimeout time.Duration
	// Routes are the HTTP routes of requests to the service, tried in order:
	// the first whose Match fits a request takes it. Empty: requests go to
	// any instance.
	Routes []Route
}

// Subset is a named group of a service's instances: those that carry every
// one of Labels (as Instance.Labels, before conversion). No labels: every
// instance.
type Subset struct {
	Name   string
	Labels Labels
}

// LBPolicy is a load-balancing algorithm.
type LBPolicy string

// The load-balancing algorithms a registry may state.
const (
	LBRoundRobin   LBPolicy = "round_robin"
	LBLeastRequest LBPolicy = "least_request"
	LBRandom       LBPolicy = "random"
	// LBRingHash and LBMaglev pick an instance by a hash of each request
	// (LoadBalancer.Hash): requests with the same key go to the same
	// instance while the set of instances stays the same.
	LBRingHash LBPolicy = "ring_hash"
	LBMaglev   LBPolicy = "maglev"
)

// LoadBalancer is a load-balancing policy.
type LoadBalancer struct {
	Policy LBPolicy
	// MinRingSize is the least number of entries of a ring hash; 0: the
	// default.
	MinRingSize uint64
	// Hash is what a hash policy hashes; nil: a random instance.
	Hash *HashKey
}

// HashKind is what a request is hashed on.
type HashKind string

// The request attributes a hash policy may use.
const (
	HashHeader   HashKind = "header"
	HashCookie   HashKind = "cookie"
	HashQuery    HashKind = "query"
	HashSourceIP HashKind = "source-ip"
)

// HashKey is what a hash policy hashes.
type HashKey struct {
	Kind HashKind
	// Name is the header, cookie or query parameter name.
	Name string
	// Cookie: when CookieGenerate is set, a client without the cookie is
	// given one, with this path and time to live (0: a session cookie).
	CookieGenerate bool
	CookieTTL      time.Duration
	CookiePath     string
}

// Route is one HTTP route.
type Route struct {
	// Match selects the requests of the route; nil: every request.
	Match *HTTPMatch
	// Destinations share the route's requests by weight (at least one).
	Destinations []WeightedDestination
	// Timeout bounds a request, retries included; 0: the mesh's default.
	Timeout time.Duration
	// Retries, nil: the mesh's default.
	Retries *Retries
	// PrefixRewrite replaces the matched path prefix (or the whole path of
	// an exact match) before the request is sent on.
	PrefixRewrite string
	// RequestHeaders and ResponseHeaders change headers on the way.
	RequestHeaders, ResponseHeaders HeaderOps
}

// WeightedDestination is where a share of a route's requests goes.
type WeightedDestination struct {
	// Host is the destination service's host.
	Host string
	// Subset names a subset of Host; "": any instance.
	Subset string
	// Weight is the share relative to the route's other destinations.
	Weight uint32
	// RequestHeaders and ResponseHeaders change headers for this share.
	RequestHeaders, ResponseHeaders HeaderOps
}

// HeaderOps change HTTP headers: Add appends a value, Set replaces every
// value, Remove deletes the header.
type HeaderOps struct {
	Add, Set Labels
	Remove   []string
}

// Empty reports whether h changes nothing.
func (h HeaderOps) Empty() bool { return h.Add.Len() == 0 && h.Set.Len() == 0 && len(h.Remove) == 0 }

// HTTPMatch selects requests: every condition set must hold.
type HTTPMatch struct {
	// Path matches the request path (exact, prefix or regex; Kind "" for
	// any path).
	Path StringMatch
	// IgnoreCase makes the path match case-insensitive.
	IgnoreCase bool
	Headers    []HeaderMatch
	Query      []QueryMatch
	// Methods: one of them ("GET", "POST"...); empty: any.
	Methods []string
}

// MatchKind is how a string is matched.
type MatchKind string

// The ways a string can be matched. A regular expression must match the
// whole string (RE2 syntax).
const (
	MatchAny     MatchKind = ""
	MatchExact   MatchKind = "exact"
	MatchPrefix  MatchKind = "prefix"
	MatchSuffix  MatchKind = "suffix"
	MatchRegex   MatchKind = "regex"
	MatchPresent MatchKind = "present"
)

// StringMatch is one string condition.
type StringMatch struct {
	Kind  MatchKind
	Value string
}

// HeaderMatch is a condition on a request header; Invert makes it hold
// when the condition does not.
type HeaderMatch struct {
	Name   string
	Match  StringMatch
	Invert bool
}

// QueryMatch is a condition on a query parameter.
type QueryMatch struct {
	Name  string
	Match StringMatch
}

// Retries retry a failed request.
type Retries struct {
	// Attempts is the number of retries (at least 1).
	Attempts uint32
	// On lists the conditions that retry: Envoy's retry conditions
	// ("connect-failure", "5xx"...) and HTTP status codes ("503").
	On []string
}
