package config

import (
	"encoding"
	"reflect"
	"slices"
	"time"

	"github.com/registry-adapter/registry-adapter/convert"
)

// Schema is a JSON Schema (draft-07) of the configuration file,
// derived from the Go types Parse decodes into, with the same key
// names (yaml tags, inline structs flattened) and the same strictness: a key
// the types lack is an error. The Helm chart embeds it in values.schema.json
// (under config), so that `helm install` rejects a misspelt key instead of
// the pod crash-looping on it; TestChartSchema keeps the two equal.
//
// It checks shape only (keys, types, durations' syntax); values are checked
// by Validate, at start and by `registry-adapter validate`. Written here
// rather than with a reflection library because the decoder's own rules
// (yaml tags, ",inline", time.Duration as "10s") would each need an override
// in one, and the walk is the one checkKeys already does.
//
// omit lists dotted paths to leave out (the chart sets server.listen itself,
// so its values must not).
func Schema(omit ...string) map[string]any {
	return schemaOf(reflect.TypeOf(Config{}), "", omit)
}

// SchemaEnums are the keys whose value is one of a few words, by dotted path: the schema lists them, so that
// `helm install` names the allowed values. TestSchemaEnums keeps them equal to what Validate accepts.
var SchemaEnums = map[string][]string{
	"sink":                   {string(SinkXDS), string(SinkKubernetes), string(SinkBoth)},
	"output.mode":            {string(convert.ModeInline), string(convert.ModeWorkloadEntry)},
	"output.location":        {"MESH_INTERNAL", "MESH_EXTERNAL"},
	"output.namespaceLayout": {string(convert.LayoutShared), string(convert.LayoutPerService)},
	"log.level":              {"debug", "info", "warn", "error"},
	"log.format":             {"json", "console"},
}

// durationPattern is what time.ParseDuration accepts (with the sign and
// units it knows).
const durationPattern = `^[-+]?(0|([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+)$`

var textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()

func schemaOf(t reflect.Type, path string, omit []string) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if values, ok := SchemaEnums[path]; ok {
		return map[string]any{"type": "string", "enum": values}
	}
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		return map[string]any{"type": "string", "pattern": durationPattern}
	case t == reflect.TypeOf(time.Time{}):
		return map[string]any{"type": "string", "format": "date-time"}
	case reflect.PointerTo(t).Implements(textUnmarshaler):
		return map[string]any{"type": "string"}
	}
	switch t.Kind() {
	case reflect.Struct:
		props := map[string]any{}
		for name, ft := range yamlFields(t) {
			p := join(path, name)
			if slices.Contains(omit, p) {
				continue
			}
			props[name] = schemaOf(ft, p, omit)
		}
		return map[string]any{"type": "object", "additionalProperties": false, "properties": props}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), path+"[]", omit)}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), path+"[]", omit)}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	}
	return map[string]any{} // interfaces: anything
}
