package ingest

import (
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/terminology"
)

// applyCodeMap adds to every record of a coded table (cdm.TableSchema.Codings)
// the standard codes its codings map to (the node admin's code map,
// terminology.CodeMap): a condition coded only in a local system then also
// carries, say, SNOMED CT 44054006, which becomes its primary coding (the
// registry's system rank) while the local code stays among its codings, so
// queries find it by either. Records whose codings map to nothing are left
// as they are.
func applyCodeMap(r *cdm.Records, cm *terminology.CodeMap) {
	if cm.Len() == 0 {
		return
	}
	var cs []cdm.Coding
	for ti := range cdm.Schema {
		t := &cdm.Schema[ti]
		if t.Codings == "" {
			continue
		}
		ic, is, io := colIndex(t, t.Coded[0]), colIndex(t, t.Coded[1]), colIndex(t, t.Codings)
		row := t.NewRow()
		for i := range t.Len(r) {
			t.Row(r, i, row)
			cs = append(cs[:0], cdm.Coding{System: row.Values[is].Str, Code: row.Values[ic].Str})
			others, err := cdm.ParseCodings(row.Values[io].Str)
			if err != nil {
				continue // checked on import; kept as it is
			}
			cs = append(cs, others...)
			n := len(cs)
			for _, c := range cs[:n] {
				for _, to := range cm.Lookup(c.System, c.Code) {
					cs = append(cs, cdm.Coding{System: to.System, Code: to.Code})
				}
			}
			if len(cs) == n {
				continue
			}
			prim, rest, ok := cdm.CodedRecord(cs)
			if !ok {
				continue
			}
			row.Values[ic].Str, row.Values[is].Str, row.Values[io].Str = prim.Code, prim.System, rest
			t.SetRow(r, i, row)
		}
	}
}

func colIndex(t *cdm.TableSchema, name string) int {
	for i, c := range t.Columns {
		if c.Name == name {
			return i
		}
	}
	panic("ingest: table " + t.Name + " has no column " + name)
}

// canonicalCodes writes the ICD-10 codes of every record of a coded table in
// their canonical form (terminology.Canonical: upper case, dotted after the
// category), whatever the format and however the export wrote them (E119,
// e11.9), so that a code is stored once however hospitals spell it. Codes
// of other systems are kept as read.
func canonicalCodes(r *cdm.Records) {
	icd := map[string]bool{}
	isICD := func(system string) bool {
		v, ok := icd[system]
		if !ok {
			v = terminology.IsICD10(system)
			icd[system] = v
		}
		return v
	}
	for ti := range cdm.Schema {
		t := &cdm.Schema[ti]
		if t.Codings == "" || t.Len(r) == 0 {
			continue
		}
		ic, is, io := colIndex(t, t.Coded[0]), colIndex(t, t.Coded[1]), colIndex(t, t.Codings)
		row := t.NewRow()
		for i := range t.Len(r) {
			t.Row(r, i, row)
			changed := false
			if sys := row.Values[is].Str; isICD(sys) {
				if c := terminology.Canonical(sys, row.Values[ic].Str); c != row.Values[ic].Str {
					row.Values[ic].Str, changed = c, true
				}
			}
			if row.Values[io].Str != "" {
				cs, err := cdm.ParseCodings(row.Values[io].Str)
				if err == nil {
					touched := false
					for k, c := range cs {
						if isICD(c.System) {
							if cc := terminology.Canonical(c.System, c.Code); cc != c.Code {
								cs[k].Code, touched = cc, true
							}
						}
					}
					if touched {
						row.Values[io].Str, changed = cdm.FormatCodings(cdm.SortCodings(cs)), true
					}
				}
			}
			if changed {
				t.SetRow(r, i, row)
			}
		}
	}
}
