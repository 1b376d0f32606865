package plan

import (
	"math"
	"strconv"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/parse"
)

// maxIntDomain is the largest range of an int study column that GROUP BY
// takes as its domain directly.
const maxIntDomain = 1000

// studyKey binds a GROUP BY key of a study table: a string column (domain:
// its listed values, narrowed by WHERE, or the values listed in WHERE), an
// int column with a small range (domain: every whole number of the range),
// or bin(x, w) of a number column (domain: bins of width w over x's range).
// ok is false for keys that the CDM rules handle.
func (b *binder) studyKey(s *scope, e parse.Expr, pos parse.Pos, name string, cons *constraints) (Key, bool, error) {
	rowLevel := !s.patientLevel()
	switch e := e.(type) {
	case *parse.Ident:
		sc, found := s.study.Lookup(e.Name)
		if !found {
			return Key{}, false, nil
		}
		col, _ := s.column(e.Name)
		switch sc.Type {
		case cdm.StudyString:
			k := Key{Name: name, Kind: KeyString, Col: col, RowLevel: rowLevel}
			l, listed := cons.lists[col.Name]
			switch {
			case len(sc.Values) > 0 && listed:
				k.Labels = intersect(sc.Values, l)
				b.markStudyDomain(name)
			case len(sc.Values) > 0:
				k.Labels = append([]string(nil), sc.Values...)
				b.markStudyDomain(name)
			case listed:
				k.Labels = l
			default:
				return Key{}, true, b.errf(parse.ErrInvalid, pos, "GROUP BY %s needs its values: list them in the study schema (values = [...]) or in WHERE (%s IN ('a', 'b'))", col.Name, col.Name)
			}
			return k, true, nil
		case cdm.StudyInt:
			lo, hi := *sc.Min, *sc.Max
			if hi-lo+1 > maxIntDomain {
				return Key{}, true, b.errf(parse.ErrInvalid, pos, "%s has %g values in its range; group it with bin(%s, width)", col.Name, hi-lo+1, col.Name)
			}
			return binKey(name, ColumnValue{col}, math.Ceil(lo), 1, int(math.Floor(hi)-math.Ceil(lo))+1, rowLevel), true, nil
		case cdm.StudyFloat:
			return Key{}, true, b.errf(parse.ErrInvalid, pos, "cannot group by the number %s: use bin(%s, width)", col.Name, col.Name)
		}
		return Key{}, false, nil
	case *parse.Call:
		if e.Name != "bin" {
			return Key{}, false, nil
		}
		id, isID := e.Args[0].(*parse.Ident)
		var sc *cdm.StudyColumn
		if isID {
			sc, isID = s.study.Lookup(id.Name)
		}
		if !isID || sc.Min == nil {
			return Key{}, true, b.errf(parse.ErrInvalid, e.Args[0].Position(), "bin() needs a number column of the study (its public range is the domain)")
		}
		n, isNum := e.Args[1].(*parse.NumberLit)
		if !isNum || !(n.Value > 0) || math.IsInf(n.Value, 0) {
			return Key{}, true, b.errf(parse.ErrInvalid, e.Args[1].Position(), "bin width must be a positive number")
		}
		lo, hi, w := *sc.Min, *sc.Max, n.Value
		cells := math.Floor((hi-lo)/w) + 1
		if cells > float64(b.cat.MaxSlots) {
			return Key{}, true, b.errf(parse.ErrInvalid, pos, "bin(%s, %g) makes %g bins; at most %d are allowed", sc.Name, w, cells, b.cat.MaxSlots)
		}
		col, _ := s.column(sc.Name)
		return binKey(name, ColumnValue{col}, lo, w, int(cells), rowLevel), true, nil
	}
	return Key{}, false, nil
}

func binKey(name string, v Value, lo, w float64, n int, rowLevel bool) Key {
	k := Key{Name: name, Kind: KeyBin, Value: v, BinLo: lo, BinWidth: w, RowLevel: rowLevel}
	for i := range n {
		k.Labels = append(k.Labels, strconv.FormatFloat(lo+float64(i)*w, 'g', -1, 64))
	}
	return k
}

// BinIndex returns the bin of v for a KeyBin key: values below the first
// bin fall in it, above the last in the last; -1 for a missing value.
func (k *Key) BinIndex(v float64) int {
	if math.IsNaN(v) {
		return -1
	}
	i := math.Floor((v - k.BinLo) / k.BinWidth)
	if i < 0 {
		return 0
	}
	if n := len(k.Labels); i >= float64(n) {
		return n - 1
	}
	return int(i)
}

// isStudyKey reports whether k groups by a column of the plan's study table
// whose domain came from the schema (for Describe).
func isStudyKey(p *Plan, k Key) bool { return p.studyDomain[k.Name] }

func (b *binder) markStudyDomain(name string) {
	if b.studyDomain == nil {
		b.studyDomain = map[string]bool{}
	}
	b.studyDomain[name] = true
}
