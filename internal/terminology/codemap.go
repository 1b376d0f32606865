package terminology

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrCodeMap marks a code map file that cannot be read.
var ErrCodeMap = errors.New("code map")

// CodeMap maps a node's local codes to standard ones. A node admin keeps it
// as a CSV file and the importer applies it: a record whose (system, code)
// is mapped also carries the standard codes, so queries written in SNOMED
// CT or ICD-10 find it.
type CodeMap struct {
	m    map[[2]string][]Concept
	rows int
}

// codeMapColumns is the CSV header, in any order; display is optional.
var codeMapColumns = []string{"local_system", "local_code", "system", "code"}

// ReadCodeMap reads a code map CSV: a header naming local_system,
// local_code, system, code and optionally display, then one mapping per
// line (a local code may map to several standard codes, one line each).
// Errors name the file, line and column.
func ReadCodeMap(path string) (*CodeMap, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCodeMap, err)
	}
	defer f.Close()
	return ParseCodeMap(path, f)
}

// ParseCodeMap reads a code map from r (name names it in errors).
func ParseCodeMap(name string, r io.Reader) (*CodeMap, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: %s:1: no header: %v", ErrCodeMap, name, err)
	}
	col := map[string]int{}
	for i, h := range head {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		switch h {
		case "local_system", "local_code", "system", "code", "display":
		default:
			return nil, fmt.Errorf("%w: %s:1: unknown column %q (want %s, display)", ErrCodeMap, name, h, strings.Join(codeMapColumns, ", "))
		}
		if _, dup := col[h]; dup {
			return nil, fmt.Errorf("%w: %s:1: column %q twice", ErrCodeMap, name, h)
		}
		col[h] = i
	}
	for _, c := range codeMapColumns {
		if _, ok := col[c]; !ok {
			return nil, fmt.Errorf("%w: %s:1: missing column %q", ErrCodeMap, name, c)
		}
	}
	cm := &CodeMap{m: map[[2]string][]Concept{}}
	get := func(rec []string, c string) string {
		if i, ok := col[c]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrCodeMap, name, err)
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		for _, c := range []string{"local_code", "system", "code"} {
			if get(rec, c) == "" {
				return nil, fmt.Errorf("%w: %s:%d: %s is empty", ErrCodeMap, name, line, c)
			}
		}
		sys := get(rec, "system")
		to := Concept{System: sys, Code: Canonical(sys, get(rec, "code")), Display: get(rec, "display")}
		key := [2]string{get(rec, "local_system"), get(rec, "local_code")}
		dup := false
		for _, c := range cm.m[key] {
			dup = dup || (c.System == to.System && c.Code == to.Code)
		}
		if !dup {
			cm.m[key] = append(cm.m[key], to)
			cm.rows++
		}
	}
	if cm.rows == 0 {
		return nil, fmt.Errorf("%w: %s: no mappings", ErrCodeMap, name)
	}
	return cm, nil
}

// Lookup returns the standard codes a local (system, code) maps to. An
// entry with an empty local_system matches the code in any system.
func (cm *CodeMap) Lookup(system, code string) []Concept {
	if cm == nil {
		return nil
	}
	code = strings.TrimSpace(code)
	if out := cm.m[[2]string{system, code}]; len(out) > 0 {
		return out
	}
	return cm.m[[2]string{"", code}]
}

// Len is the number of mappings.
func (cm *CodeMap) Len() int {
	if cm == nil {
		return 0
	}
	return cm.rows
}
