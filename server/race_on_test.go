//go:build race

package server

// raceEnabled: the race detector slows a gRPC round trip about 15x, so the
// hostile-client test sends fewer requests under it.
const raceEnabled = true
