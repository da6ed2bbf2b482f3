package sources

import (
	"bytes"
	"fmt"
	"text/template"

	"github.com/registry-adapter/registry-adapter/model"
)

// ParseHostTemplate parses a source's host template (a text/template over
// the source's own fields, such as .Service) and executes it once on sample,
// so that a reference to an unknown field fails at start, not on the first
// service. Errors name the field ("hostTemplate", "peerHostTemplate").
// Every source makes its hosts this way, with RenderHost.
func ParseHostTemplate(field, text string, sample any) (*template.Template, error) {
	t, err := template.New(field).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if _, err := RenderHost(t, sample); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return t, nil
}

// RenderHost executes a host template and makes the result a host by the
// one policy of every source, model.SanitizeHost.
func RenderHost(t *template.Template, data any) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return model.SanitizeHost(b.String())
}
