package fhir

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner is a small, strict, allocation-light JSON reader over one buffer.
// It decodes only what the importer asks for and validates (but does not
// decode) everything it skips, so malformed JSON anywhere in an input is
// reported. It is not safe for concurrent use.
type scanner struct {
	buf []byte
	pos int
	tmp []byte // scratch for unescaping
}

// syntaxError is malformed JSON at a byte offset of the buffer.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string        { return e.msg }
func (e *syntaxError) Is(target error) bool { return target == ErrSyntax }

// typeError is a JSON value of the wrong type.
type typeError struct {
	want, got string
}

func (e *typeError) Error() string        { return "want " + e.want + ", got " + e.got }
func (e *typeError) Is(target error) bool { return target == ErrType }

// fieldError attaches a field path (innermost segment first while
// unwinding) to an error.
type fieldError struct {
	segs []string // reversed: innermost first
	err  error
}

func (e *fieldError) Error() string { return e.path() + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

func (e *fieldError) path() string {
	var b []byte
	for i := len(e.segs) - 1; i >= 0; i-- {
		s := e.segs[i]
		if len(b) > 0 && (s == "" || s[0] != '[') {
			b = append(b, '.')
		}
		b = append(b, s...)
	}
	return string(b)
}

// at wraps err with one more (outer) path segment: a field name, or "[i]".
func at(seg string, err error) error {
	if err == nil {
		return nil
	}
	var fe *fieldError
	if errors.As(err, &fe) {
		fe.segs = append(fe.segs, seg)
		return fe
	}
	return &fieldError{segs: []string{seg}, err: err}
}

func idx(i int) string { return "[" + strconv.Itoa(i) + "]" }

func (s *scanner) errf(format string, args ...any) error {
	return &syntaxError{off: s.pos, msg: fmt.Sprintf(format, args...)}
}

// ws skips white space.
func (s *scanner) ws() {
	for s.pos < len(s.buf) {
		switch s.buf[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// kind names the JSON type of the next value (after white space).
func (s *scanner) kind() string {
	s.ws()
	if s.pos >= len(s.buf) {
		return "end of input"
	}
	switch c := s.buf[s.pos]; {
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == '"':
		return "string"
	case c == 't' || c == 'f':
		return "boolean"
	case c == 'n':
		return "null"
	case c == '-' || (c >= '0' && c <= '9'):
		return "number"
	}
	return "invalid character " + strconv.QuoteRune(rune(s.buf[s.pos]))
}

// wrongType skips the next value (so syntax is still checked) and returns a
// typeError.
func (s *scanner) wrongType(want string) error {
	got := s.kind()
	if err := s.skip(); err != nil {
		return err
	}
	return &typeError{want: want, got: got}
}

// object calls fn for each member of the object at the current position,
// with the scanner positioned at the member's value; fn must consume the
// value. A non-object value is a typeError.
func (s *scanner) object(fn func(key []byte) error) error {
	s.ws()
	if s.pos >= len(s.buf) || s.buf[s.pos] != '{' {
		return s.wrongType("an object")
	}
	s.pos++
	s.ws()
	if s.pos < len(s.buf) && s.buf[s.pos] == '}' {
		s.pos++
		return nil
	}
	for {
		s.ws()
		if s.pos >= len(s.buf) || s.buf[s.pos] != '"' {
			return s.errf("want a member name in quotes")
		}
		key, err := s.str()
		if err != nil {
			return err
		}
		s.ws()
		if s.pos >= len(s.buf) || s.buf[s.pos] != ':' {
			return s.errf("want ':' after member name")
		}
		s.pos++
		if err := fn(key); err != nil {
			return err
		}
		s.ws()
		if s.pos >= len(s.buf) {
			return s.errf("unexpected end of input in object")
		}
		switch s.buf[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.errf("want ',' or '}' in object")
		}
	}
}

// array calls fn for each element of the array at the current position;
// fn must consume the element. A non-array value is a typeError.
func (s *scanner) array(fn func(i int) error) error {
	s.ws()
	if s.pos >= len(s.buf) || s.buf[s.pos] != '[' {
		return s.wrongType("an array")
	}
	s.pos++
	s.ws()
	if s.pos < len(s.buf) && s.buf[s.pos] == ']' {
		s.pos++
		return nil
	}
	for i := 0; ; i++ {
		if err := fn(i); err != nil {
			return err
		}
		s.ws()
		if s.pos >= len(s.buf) {
			return s.errf("unexpected end of input in array")
		}
		switch s.buf[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.errf("want ',' or ']' in array")
		}
	}
}

// stringValue reads a string value. The result aliases the buffer or the
// scratch space: copy it before the next read if it must be kept.
func (s *scanner) stringValue() ([]byte, error) {
	s.ws()
	if s.pos >= len(s.buf) || s.buf[s.pos] != '"' {
		return nil, s.wrongType("a string")
	}
	return s.str()
}

// text reads a string value as a new string.
func (s *scanner) text() (string, error) {
	b, err := s.stringValue()
	return string(b), err
}

// number reads a number value.
func (s *scanner) number() (float64, error) {
	s.ws()
	start := s.pos
	if s.pos >= len(s.buf) || !(s.buf[s.pos] == '-' || (s.buf[s.pos] >= '0' && s.buf[s.pos] <= '9')) {
		return 0, s.wrongType("a number")
	}
	if err := s.skipNumber(); err != nil {
		return 0, err
	}
	v, err := strconv.ParseFloat(string(s.buf[start:s.pos]), 64)
	if err != nil {
		return 0, &typeError{want: "a finite number", got: strconv.Quote(string(s.buf[start:s.pos]))}
	}
	return v, nil
}

// str reads the string starting at the opening quote at s.pos.
func (s *scanner) str() ([]byte, error) {
	s.pos++ // opening quote
	rest := s.buf[s.pos:]
	q := bytes.IndexByte(rest, '"')
	if q < 0 {
		return nil, s.errf("unterminated string")
	}
	if bytes.IndexByte(rest[:q], '\\') < 0 {
		for _, c := range rest[:q] {
			if c < 0x20 {
				return nil, s.errf("control character in string")
			}
		}
		s.pos += q + 1
		return rest[:q], nil
	}
	return s.strEscaped()
}

// strEscaped decodes a string with escapes into s.tmp.
func (s *scanner) strEscaped() ([]byte, error) {
	out := s.tmp[:0]
	for {
		if s.pos >= len(s.buf) {
			return nil, s.errf("unterminated string")
		}
		c := s.buf[s.pos]
		switch {
		case c == '"':
			s.pos++
			s.tmp = out
			return out, nil
		case c < 0x20:
			return nil, s.errf("control character in string")
		case c != '\\':
			out = append(out, c)
			s.pos++
			continue
		}
		if s.pos+1 >= len(s.buf) {
			return nil, s.errf("unterminated string")
		}
		e := s.buf[s.pos+1]
		s.pos += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := s.hex4()
			if !ok {
				return nil, s.errf("bad \\u escape in string")
			}
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if s.pos+1 < len(s.buf) && s.buf[s.pos] == '\\' && s.buf[s.pos+1] == 'u' {
					s.pos += 2
					lo, ok := s.hex4()
					if !ok {
						return nil, s.errf("bad \\u escape in string")
					}
					r2 = utf16.DecodeRune(r, lo)
				}
				r = r2
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, s.errf("bad escape \\%c in string", e)
		}
	}
}

func (s *scanner) hex4() (rune, bool) {
	if s.pos+4 > len(s.buf) {
		return 0, false
	}
	var r rune
	for _, c := range s.buf[s.pos : s.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	s.pos += 4
	return r, true
}

// skipString skips a string, validating escapes, without decoding it.
func (s *scanner) skipString() error {
	s.pos++
	for {
		rest := s.buf[s.pos:]
		q := bytes.IndexByte(rest, '"')
		if q < 0 {
			return s.errf("unterminated string")
		}
		bs := bytes.IndexByte(rest[:q], '\\')
		if bs < 0 {
			for _, c := range rest[:q] {
				if c < 0x20 {
					return s.errf("control character in string")
				}
			}
			s.pos += q + 1
			return nil
		}
		for _, c := range rest[:bs] {
			if c < 0x20 {
				return s.errf("control character in string")
			}
		}
		s.pos += bs + 1
		if s.pos >= len(s.buf) {
			return s.errf("unterminated string")
		}
		switch s.buf[s.pos] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			s.pos++
		case 'u':
			s.pos++
			if _, ok := s.hex4(); !ok {
				return s.errf("bad \\u escape in string")
			}
		default:
			return s.errf("bad escape in string")
		}
	}
}

// skipNumber skips a number, checking the JSON number grammar.
func (s *scanner) skipNumber() error {
	b := s.buf
	i := s.pos
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		s.pos = i
		return s.errf("bad number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == j {
			s.pos = i
			return s.errf("bad number: want a digit after '.'")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == j {
			s.pos = i
			return s.errf("bad number: want a digit in exponent")
		}
	}
	s.pos = i
	return nil
}

func (s *scanner) literal(lit string) error {
	if !bytes.HasPrefix(s.buf[s.pos:], []byte(lit)) {
		return s.errf("invalid literal, want %s", lit)
	}
	s.pos += len(lit)
	return nil
}

// skip skips one value of any type, validating it.
func (s *scanner) skip() error {
	s.ws()
	if s.pos >= len(s.buf) {
		return s.errf("unexpected end of input, want a value")
	}
	switch c := s.buf[s.pos]; {
	case c == '"':
		return s.skipString()
	case c == '{':
		return s.object(func([]byte) error { return s.skip() })
	case c == '[':
		return s.array(func(int) error { return s.skip() })
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.skipNumber()
	default:
		return s.errf("invalid character %q, want a value", c)
	}
}

// isNull consumes a null and reports true if the next value is null.
func (s *scanner) isNull() bool {
	s.ws()
	if bytes.HasPrefix(s.buf[s.pos:], []byte("null")) {
		s.pos += 4
		return true
	}
	return false
}

// end checks that only white space follows.
func (s *scanner) end() error {
	s.ws()
	if s.pos < len(s.buf) {
		return s.errf("unexpected data after the top-level value")
	}
	return nil
}

// lineCol returns the 1-based line and column of byte offset off.
func lineCol(buf []byte, off int) (int, int) {
	if off > len(buf) {
		off = len(buf)
	}
	line := 1 + bytes.Count(buf[:off], []byte{'\n'})
	col := off - bytes.LastIndexByte(buf[:off], '\n')
	return line, col
}
