package validation

import (
	"strings"

	"github.com/registry-adapter/registry-adapter/model"
)

// Ports pkg/config/protocol/instance.go onto model.Protocol, which spells
// every protocol as Istio does.

// protocolHTTPProxy is Istio's HTTP_PROXY. model.Protocol leaves it out
// because no registry declares it for a service, but a ServiceEntry carrying
// it is valid.
const protocolHTTPProxy model.Protocol = "HTTP_PROXY"

// parseProtocol is protocol.Parse: case-insensitive; it reports false for
// names Istio does not know, including "" (the callers treat the empty
// protocol specially where Istio does).
func parseProtocol(s string) (model.Protocol, bool) {
	if strings.EqualFold(s, string(protocolHTTPProxy)) {
		return protocolHTTPProxy, true
	}
	return model.ParseProtocol(s)
}

func isHTTP(p model.Protocol) bool {
	switch p {
	case model.ProtocolHTTP, model.ProtocolHTTP2, protocolHTTPProxy, model.ProtocolGRPC, model.ProtocolGRPCWeb:
		return true
	}
	return false
}

func isTCP(p model.Protocol) bool {
	switch p {
	case model.ProtocolTCP, model.ProtocolHTTPS, model.ProtocolTLS, model.ProtocolMongo, model.ProtocolRedis, model.ProtocolMySQL:
		return true
	}
	return false
}

func isTLS(p model.Protocol) bool {
	return p == model.ProtocolHTTPS || p == model.ProtocolTLS
}
