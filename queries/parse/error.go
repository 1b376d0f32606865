package parse

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors; every *Error wraps one of them.
var (
	// ErrSyntax marks text that is not in the grammar.
	ErrSyntax = errors.New("parse: syntax error")
	// ErrUnknownName marks an unknown table, column or function.
	ErrUnknownName = errors.New("parse: unknown name")
	// ErrInvalid marks a well-formed query the planner refuses (wrong types,
	// unbounded domains, unsupported combinations).
	ErrInvalid = errors.New("parse: invalid query")
)

// Error is an error that points into the query text. Line and Column are
// 1-based; Column counts runes. Its Error text is
//
//	line L, column C: message
//	  <the offending line>
//	  <spaces>^
//
// and it unwraps to Kind (ErrSyntax, ErrUnknownName or ErrInvalid).
type Error struct {
	Kind     error
	Msg      string
	Offset   int    // byte offset into the query
	Line     int    // 1-based
	Column   int    // 1-based, in runes
	LineText string // the line of the query at Offset, without newline
}

// NewError returns an *Error of the given kind at byte offset pos of src.
// The planner uses it for errors that point into the query.
func NewError(kind error, src string, pos Pos, format string, args ...any) *Error {
	off := int(pos)
	if off < 0 {
		off = 0
	}
	if off > len(src) {
		off = len(src)
	}
	start := strings.LastIndexByte(src[:off], '\n') + 1
	end := strings.IndexByte(src[off:], '\n')
	if end < 0 {
		end = len(src)
	} else {
		end += off
	}
	line := strings.Count(src[:off], "\n") + 1
	col := len([]rune(src[start:off])) + 1
	return &Error{
		Kind: kind, Msg: fmt.Sprintf(format, args...), Offset: off,
		Line: line, Column: col, LineText: strings.TrimRight(src[start:end], "\r"),
	}
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "line %d, column %d: %s\n  ", e.Line, e.Column, e.Msg)
	// Tabs are kept so the caret lines up under tabs too.
	pad := make([]rune, 0, e.Column)
	for i, r := range []rune(e.LineText) {
		if i >= e.Column-1 {
			break
		}
		if r == '\t' {
			pad = append(pad, '\t')
		} else {
			pad = append(pad, ' ')
		}
	}
	b.WriteString(e.LineText)
	b.WriteString("\n  ")
	b.WriteString(string(pad))
	b.WriteString("^")
	return b.String()
}

// Unwrap returns the sentinel kind.
func (e *Error) Unwrap() error { return e.Kind }

// Suggest returns the candidate closest to name by edit distance, if it is
// close enough to be a plausible misspelling (distance at most 2, and at most
// a third of the name's length rounded up), else "".
func Suggest(name string, candidates []string) string {
	best, bestD := "", 1<<30
	limit := (len(name) + 2) / 3
	if limit > 2 {
		limit = 2
	}
	if limit < 1 {
		limit = 1
	}
	for _, c := range candidates {
		d := editDistance(strings.ToLower(name), strings.ToLower(c))
		if d < bestD {
			best, bestD = c, d
		}
	}
	if bestD <= limit {
		return best
	}
	return ""
}

// UnknownName returns an ErrUnknownName error: "unknown <what> `name`", with
// "; did you mean `x`?" when Suggest finds a close candidate.
func UnknownName(src string, pos Pos, what, name string, candidates []string) *Error {
	if s := Suggest(name, candidates); s != "" {
		return NewError(ErrUnknownName, src, pos, "unknown %s `%s`; did you mean `%s`?", what, name, s)
	}
	return NewError(ErrUnknownName, src, pos, "unknown %s `%s`", what, name)
}

// editDistance is the Levenshtein distance (bytes), with inputs capped at 64
// bytes so that hostile input cannot make it expensive.
func editDistance(a, b string) int {
	if len(a) > 64 {
		a = a[:64]
	}
	if len(b) > 64 {
		b = b[:64]
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
