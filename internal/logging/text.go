package logging

import (
	"bytes"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
)

// fastText renders one event like slowText, appending to dst, without
// decoding the whole event: it walks the top-level keys and decodes only
// time, level, message, error and the human/machine marks. A live scan of
// 10,000 hung sockets logs 30,000 events; decoding each into a map took
// 300 ms. It declines (false) debug lines and anything it does not read
// exactly as encoding/json would; slowText renders those.
func fastText(p []byte, dst []byte) ([]byte, bool) {
	// Whatever encoding/json would refuse, slowText passes on as is.
	if !json.Valid(p) {
		return nil, false
	}
	var tsRaw, lvlRaw, msgRaw, errRaw []byte
	machine := false
	ok := walkObject(p, func(key, val []byte) bool {
		switch string(key) {
		case zerolog.TimestampFieldName:
			tsRaw = val
		case zerolog.LevelFieldName:
			lvlRaw = val
		case zerolog.MessageFieldName:
			msgRaw = val
		case zerolog.ErrorFieldName:
			errRaw = val
		case Machine:
			machine = string(val) == "true"
		}
		return true
	})
	if !ok {
		return nil, false
	}
	// A field that is not a string reads as absent, as in slowText.
	lvl, lvlOK := jsonString(lvlRaw)
	msg, msgOK := jsonString(msgRaw)
	if lvlRaw != nil && !lvlOK || msgRaw != nil && !msgOK || lvl == "debug" {
		return nil, false
	}
	if machine {
		return dst[:0], true
	}
	var ts time.Time
	if s, ok := jsonString(tsRaw); ok {
		ts, _ = time.Parse(time.RFC3339Nano, s)
	}
	if ts.IsZero() {
		ts = time.Now()
	}
	dst = ts.Local().AppendFormat(dst, "2006-01-02 15:04:05")
	dst = append(dst, " - "...)
	dst = append(dst, levelNames[lvl]...)
	dst = append(dst, " - "...)
	dst = append(dst, msg...)
	if e, ok := jsonString(errRaw); ok {
		dst = append(dst, ": "...)
		dst = append(dst, e...)
	}
	return append(dst, '\n'), true
}

// jsonString decodes a raw JSON string value; false when raw is not one.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	in := raw[1 : len(raw)-1]
	if bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
		return string(in), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// walkObject calls fn with the raw key (between its quotes) and raw value
// of each top-level member of the JSON object in p, which must be valid
// JSON. It returns false for anything but an object, and for keys with
// escapes, which it does not decode.
func walkObject(p []byte, fn func(key, val []byte) bool) bool {
	i := skipSpace(p, 0)
	if i >= len(p) || p[i] != '{' {
		return false
	}
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == '}' {
		return skipSpace(p, i+1) == len(p)
	}
	for {
		if i >= len(p) || p[i] != '"' {
			return false
		}
		end := skipString(p, i)
		if end < 0 {
			return false
		}
		key := p[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			return false
		}
		i = skipSpace(p, end)
		if i >= len(p) || p[i] != ':' {
			return false
		}
		i = skipSpace(p, i+1)
		end = skipValue(p, i)
		if end < 0 {
			return false
		}
		if !fn(key, p[i:end]) {
			return false
		}
		i = skipSpace(p, end)
		if i >= len(p) {
			return false
		}
		switch p[i] {
		case ',':
			i = skipSpace(p, i+1)
		case '}':
			return skipSpace(p, i+1) == len(p)
		default:
			return false
		}
	}
}

func skipSpace(p []byte, i int) int {
	for i < len(p) && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at p[i] ('"'),
// or -1.
func skipString(p []byte, i int) int {
	for j := i + 1; j < len(p); j++ {
		switch p[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index after the (valid) JSON value starting at
// p[i], or -1.
func skipValue(p []byte, i int) int {
	if i >= len(p) {
		return -1
	}
	switch c := p[i]; {
	case c == '"':
		return skipString(p, i)
	case c == '{' || c == '[':
		depth := 0
		for j := i; j < len(p); j++ {
			switch p[j] {
			case '"':
				e := skipString(p, j)
				if e < 0 {
					return -1
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default:
		j := i
		for j < len(p) && p[j] != ',' && p[j] != '}' && p[j] != ' ' && p[j] != '\n' && p[j] != '\t' && p[j] != '\r' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}
