package mototest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
)

// StatusProxy stands in front of moto for the EC2 health tests. moto 5.2.1
// implements DescribeInstanceStatus and ELBv2's DescribeTargetHealth (their
// real XML) but reports every running instance ok and every registered
// instance target healthy, with no way to change either: the proxy
// rewrites the status checks and target states of the instances a test
// names in moto's own answers, fails both calls on demand, and counts
// requests by action. Everything else goes to moto unchanged.
type StatusProxy struct {
	// URL is the proxy's, to give the source as its endpoint.
	URL string

	srv *httptest.Server
	tr  *http.Transport

	mu       sync.Mutex
	statuses map[string]string // instance ID -> summary status of both checks
	targets  map[string]string // instance ID -> target state in every target group
	fail     string            // "", "500", "throttle"
	requests map[string]int    // by Action
}

// NewStatusProxy starts a proxy in front of the moto at motoURL; Close
// stops it.
func NewStatusProxy(motoURL string) (*StatusProxy, error) {
	target, err := url.Parse(motoURL)
	if err != nil {
		return nil, err
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	p := &StatusProxy{statuses: map[string]string{}, targets: map[string]string{}, requests: map[string]int{},
		tr: http.DefaultTransport.(*http.Transport).Clone()}
	proxy.Transport = p.tr
	proxy.ModifyResponse = func(resp *http.Response) error {
		action := resp.Request.Header.Get("X-Test-Action")
		if (action != "DescribeInstanceStatus" && action != "DescribeTargetHealth") || resp.StatusCode != http.StatusOK {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if action == "DescribeInstanceStatus" {
			b = p.rewrite(b)
		} else {
			b = p.rewriteTargets(b)
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", fmt.Sprint(len(b)))
		return nil
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		action := form.Get("Action")
		p.mu.Lock()
		p.requests[action]++
		fail := p.fail
		p.mu.Unlock()
		r.Header.Set("X-Test-Action", action)
		if (action == "DescribeInstanceStatus" || action == "DescribeTargetHealth") && fail != "" {
			code, msg, status := "InternalError", "An internal error has occurred", http.StatusInternalServerError
			if fail == "throttle" {
				// What EC2 answers when the account's API rate is exceeded.
				code, msg, status = "RequestLimitExceeded", "Request limit exceeded.", http.StatusServiceUnavailable
			}
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(status)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>%s</Code>`+
				`<Message>%s</Message></Error></Errors><RequestID>r-1</RequestID></Response>`, code, msg)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	p.URL = p.srv.URL
	return p, nil
}

// Close stops the proxy and closes its connections to moto.
func (p *StatusProxy) Close() {
	p.srv.Close()
	p.tr.CloseIdleConnections()
}

// Set makes both status checks of instance id report status ("impaired",
// "initializing", "insufficient-data"); "" gives moto's own answer back.
func (p *StatusProxy) Set(id, status string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if status == "" {
		delete(p.statuses, id)
	} else {
		p.statuses[id] = status
	}
}

// SetTarget makes every target of instance id report state ("unhealthy",
// "draining", "initial", "unused"); "" gives moto's own answer back.
func (p *StatusProxy) SetTarget(id, state string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if state == "" {
		delete(p.targets, id)
	} else {
		p.targets[id] = state
	}
}

// Fail makes every DescribeInstanceStatus and DescribeTargetHealth fail:
// "500" (InternalError), "throttle" (RequestLimitExceeded, Throttling); ""
// lets them through again.
func (p *StatusProxy) Fail(mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = mode
}

// Count returns the requests of an action since the last Reset.
func (p *StatusProxy) Count(action string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[action]
}

// Reset zeroes the request counts.
func (p *StatusProxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = map[string]int{}
}

// rewrite replaces, in moto's DescribeInstanceStatusResponse, the status
// (and reachability detail) of the system and instance checks of each
// instance the test set. moto writes each item's instanceId before its
// instanceStatus and systemStatus (the order of EC2's own answers).
func (p *StatusProxy) rewrite(b []byte) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := string(b)
	for id, status := range p.statuses {
		at := strings.Index(s, "<instanceId>"+id+"</instanceId>")
		if at < 0 {
			continue
		}
		end := strings.Index(s[at:], "</systemStatus>")
		if end < 0 {
			continue
		}
		end += at
		detail := map[string]string{"impaired": "failed", "initializing": "initializing", "insufficient-data": "insufficient-data"}[status]
		item := s[at:end]
		item = strings.ReplaceAll(item, "<status>passed</status>", "<status>"+detail+"</status>")
		item = strings.ReplaceAll(item, "<status>ok</status>", "<status>"+status+"</status>")
		s = s[:at] + item + s[end:]
	}
	return []byte(s)
}

// rewriteTargets replaces, in moto's DescribeTargetHealthResponse, the state
// of each target of the instances the test set (moto writes each member's
// Target before its TargetHealth).
func (p *StatusProxy) rewriteTargets(b []byte) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := string(b)
	for id, state := range p.targets {
		from := 0
		for {
			at := strings.Index(s[from:], "<Id>"+id+"</Id>")
			if at < 0 {
				break
			}
			at += from
			end := strings.Index(s[at:], "</TargetHealth>")
			if end < 0 {
				break
			}
			end += at
			member := s[at:end]
			i, j := strings.Index(member, "<State>"), strings.Index(member, "</State>")
			if i >= 0 && j > i {
				member = member[:i] + "<State>" + state + "</State>" + member[j+len("</State>"):]
			}
			s = s[:at] + member + s[end:]
			from = at + len(member)
		}
	}
	return []byte(s)
}
