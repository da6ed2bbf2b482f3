package validation

import (
	"errors"
	"fmt"
)

// Ports pkg/config/validation/header_value_validator.go, itself a port of
// Envoy's header_parser.cc: a header value may hold %VARIABLE% and
// %VARIABLE(args)% expressions, and a lone '%' must be escaped as "%%".

type parserState int

const (
	literalState                   parserState = iota // literal data
	variableNameState                                 // a %VAR% name
	expectArrayState                                  // the [ of %VAR([...])%
	expectStringState                                 // the " of an array element
	stringState                                       // an array element string
	expectArrayDelimiterOrEndState                    // , or ] in the array
	expectArgsEndState                                // the ) of %VAR(...)%
	expectVariableEndState                            // the closing % of %VAR(...)%
)

func validateHeaderValue(v string) error {
	state := literalState
	for pos := 0; pos < len(v); pos++ {
		ch := v[pos]
		hasNext := pos+1 < len(v)
		switch state {
		case literalState:
			if ch != '%' {
				break
			}
			if !hasNext {
				return errors.New("invalid header configuration. Un-escaped %")
			}
			if v[pos+1] == '%' {
				pos++
				break
			}
			state = variableNameState
		case variableNameState:
			if ch == '%' {
				state = literalState
			} else if ch == '(' {
				state = expectArrayState
			}
		case expectArrayState:
			if ch == '[' {
				state = expectStringState
			} else if ch != ' ' {
				state = stringState
			}
		case expectArrayDelimiterOrEndState:
			switch {
			case ch == ',':
				state = expectStringState
			case ch == ']':
				state = expectArgsEndState
			case ch != ' ':
				return errors.New("invalid header configuration. Expecting ',', ']', or whitespace")
			}
		case expectStringState:
			if ch == '"' {
				state = stringState
			} else if ch != ' ' {
				return errors.New("invalid header configuration. Expecting '\"'")
			}
		case stringState:
			switch ch {
			case '\\':
				if !hasNext {
					return errors.New("invalid header configuration. Un-terminated backslash in JSON string")
				}
				pos++
			case ')':
				state = expectVariableEndState
			case '"':
				state = expectArrayDelimiterOrEndState
			}
		case expectArgsEndState:
			if ch == ')' {
				state = expectVariableEndState
			} else if ch != ' ' {
				return errors.New("invalid header configuration. Expecting ')' or whitespace after '{}', but found '{}'")
			}
		case expectVariableEndState:
			if ch == '%' {
				state = literalState
			} else if ch != ' ' {
				return errors.New("invalid header configuration. Expecting '%' or whitespace after")
			}
		}
	}
	if state != literalState {
		return fmt.Errorf("invalid header configuration. Un-terminated variable expression '%s'", v)
	}
	return nil
}
