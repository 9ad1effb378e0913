package main

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// flagError turns pflag's parse errors into one clear line: no strconv
// internals ("strconv.ParseUint: parsing \"-1\": invalid syntax").
func flagError(_ *cobra.Command, err error) error {
	var iv *pflag.InvalidValueError
	if !errors.As(err, &iv) {
		return usageError{err}
	}
	want := wantFor(iv.GetFlag().Value.Type())
	if want == "" {
		// A value type of ours: its error is already one clear line.
		want = iv.Unwrap().Error()
	}
	return usagef("--%s: invalid value %q: %s", iv.GetFlag().Name, iv.GetValue(), want)
}

// wantFor says what a flag of a pflag value type accepts; "" for types
// that explain their own errors.
func wantFor(typ string) string {
	switch typ {
	case "int", "int8", "int16", "int32", "int64":
		return "want a whole number"
	case "uint", "uint64":
		return "want a whole number from 0 to " + strconv.FormatUint(math.MaxUint64, 10)
	case "uint8":
		return "want a whole number from 0 to " + strconv.Itoa(math.MaxUint8)
	case "uint16":
		return "want a whole number from 0 to " + strconv.Itoa(math.MaxUint16)
	case "uint32":
		return "want a whole number from 0 to " + strconv.FormatUint(math.MaxUint32, 10)
	case "float32", "float64":
		return "want a number"
	case "bool":
		return "want true or false"
	case "duration":
		return "want a Go duration (90s, 1m30s)"
	}
	return ""
}

// choice is a string flag that takes one of a fixed set of values, and
// refuses anything else, the empty string included, when it is parsed.
type choice struct {
	value   *string
	allowed []string
}

func newChoice(p *string, def string, allowed ...string) *choice {
	*p = def
	return &choice{value: p, allowed: allowed}
}

func (c *choice) String() string {
	if c == nil || c.value == nil {
		return ""
	}
	return *c.value
}

func (c *choice) Type() string { return "string" }

func (c *choice) Set(v string) error {
	if !slices.Contains(c.allowed, v) {
		return fmt.Errorf("want %s", strings.Join(c.allowed, " or "))
	}
	*c.value = v
	return nil
}

// pathValue is a string flag naming a file: given, it may not be empty
// (a variable that expanded to nothing would silently mean "no file").
type pathValue struct{ p *string }

func (v pathValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v pathValue) Type() string { return "string" }

func (v pathValue) Set(s string) error {
	if s == "" {
		return errors.New("want a file path")
	}
	*v.p = s
	return nil
}
