package measure

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Scrape reads the Prometheus text page at url (see ParseText).
func Scrape(url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return ParseText(resp.Body)
}

// ParseText reads the samples of a Prometheus text page, keyed as printed
// (name{labels}) but without a _total suffix and without OpenTelemetry's
// otel_scope_* labels; samples that then share a key are added up. Comments
// and lines without a number are skipped.
func ParseText(r io.Reader) (map[string]float64, error) {
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		key := line[:sp]
		if name, labels, ok := strings.Cut(key, "{"); ok {
			var keep []string
			for _, l := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
				if l != "" && !strings.HasPrefix(l, "otel_scope_") {
					keep = append(keep, l)
				}
			}
			name = strings.TrimSuffix(name, "_total")
			key = name
			if len(keep) > 0 {
				key = name + "{" + strings.Join(keep, ",") + "}"
			}
		} else {
			key = strings.TrimSuffix(key, "_total")
		}
		m[key] += v
	}
	return m, sc.Err()
}
