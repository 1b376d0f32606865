// Package result holds released query results and formats them as a table,
// JSON or CSV. Everything in a Result is already differentially private (or,
// when Exact is set, a node admin's local exact answer that never leaves the
// node); formatting is post-processing and costs no budget.
package result

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Number is one released number.
type Number struct {
	Value float64
	// CILow and CIHigh bound the 95% interval from the noise actually added
	// (NaN for exact answers).
	CILow, CIHigh float64
	// Display is what a table shows: the rounded value, or "< k" for a count
	// below the small-count threshold (and "n < k" for a statistic whose
	// count is below it).
	Display string
	// Suppressed is true when Display hides the value; JSON and CSV then
	// omit Value and the interval too.
	Suppressed bool
	// Variance is the variance of the DP noise in Value as queries/dp
	// computed it for the release (a property of the plan and the number of
	// partials, never of the data), or NaN when there is none: exact
	// answers, and the ratios (means, variances, standard deviations), whose
	// intervals are delta-method approximations. Released counts and sums
	// carry it, so that whoever solves on them (queries/stats) need not
	// re-plan the query. JSON shows it (variance); the table and CSV do not.
	Variance float64
}

// Row is one cell of the group domain: its key labels and its numbers.
type Row struct {
	Keys   []string
	Values []Number
}

// Result is a released (or locally exact) query result.
type Result struct {
	// Columns names the key columns (the first KeyColumns) and then the
	// aggregate columns.
	Columns    []string
	KeyColumns int
	Rows       []Row
	// Cost of the release.
	Epsilon, Delta, Rho float64
	Mechanism           string
	// Nodes is the number of partials summed.
	Nodes int
	// SmallCountThreshold is k (0: off).
	SmallCountThreshold int
	// Exact marks a node admin's local exact answer (no noise, no
	// intervals); it must never leave the node.
	Exact bool
	// KeyNames maps key labels that are codes to their display names (from
	// the catalogue's value sets); the formats show them beside the codes.
	KeyNames map[string]string
}

// keyCell is a key label as the table shows it: with its name when known.
func (r *Result) keyCell(label string) string {
	if n := r.KeyNames[label]; n != "" {
		return label + " (" + n + ")"
	}
	return label
}

// FormatValue returns the display text of v: whole numbers for counts and
// for values of magnitude 1000 or more, four significant digits otherwise.
func FormatValue(v float64, integer bool) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case integer, math.Abs(v) >= 1000:
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// WriteTable writes an aligned text table with intervals and a footer
// stating the cost.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(r.Columns, "\t"))
	for _, row := range r.Rows {
		cells := make([]string, 0, len(row.Keys)+len(row.Values))
		for _, k := range row.Keys {
			cells = append(cells, r.keyCell(k))
		}
		for _, n := range row.Values {
			s := n.Display
			if !r.Exact && !n.Suppressed && !math.IsNaN(n.CILow) {
				s += " [" + FormatValue(n.CILow, false) + ", " + FormatValue(n.CIHigh, false) + "]"
			}
			cells = append(cells, s)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var err error
	if r.Exact {
		_, err = fmt.Fprintln(w, "exact local answer: not differentially private, must not leave this node")
	} else {
		foot := fmt.Sprintf("%s mechanism, %d nodes; cost epsilon %g, delta %g (rho %.4g zCDP); [95%% interval from the noise added]", r.Mechanism, r.Nodes, r.Epsilon, r.Delta, r.Rho)
		if r.SmallCountThreshold > 0 {
			foot += fmt.Sprintf("; counts below %d shown as < %d", r.SmallCountThreshold, r.SmallCountThreshold)
		}
		_, err = fmt.Fprintln(w, foot)
	}
	return err
}

type jsonNumber struct {
	Value   *float64 `json:"value"`
	CILow   *float64 `json:"ci_low,omitempty"`
	CIHigh  *float64 `json:"ci_high,omitempty"`
	Display string   `json:"display"`
	// Variance is the noise variance of Value (absent for ratios and
	// exact answers): what an analyst needs to weigh or forecast released
	// values.
	Variance *float64 `json:"variance,omitempty"`
	// Suppressed marks a count below the small-count threshold (Value
	// null).
	Suppressed bool `json:"suppressed,omitempty"`
}

type jsonRow struct {
	Keys   []string     `json:"keys"`
	Values []jsonNumber `json:"values"`
}

type jsonResult struct {
	Columns             []string          `json:"columns"`
	KeyColumns          int               `json:"key_columns"`
	Rows                []jsonRow         `json:"rows"`
	Epsilon             float64           `json:"epsilon"`
	Delta               float64           `json:"delta"`
	Rho                 float64           `json:"rho"`
	Mechanism           string            `json:"mechanism,omitempty"`
	Nodes               int               `json:"nodes"`
	SmallCountThreshold int               `json:"small_count_threshold"`
	Exact               bool              `json:"exact,omitempty"`
	KeyNames            map[string]string `json:"key_names,omitempty"`
}

func fptr(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// WriteJSON writes r as one JSON object. Suppressed numbers have a null
// value and no interval; NaN is null.
func (r *Result) WriteJSON(w io.Writer) error {
	out := jsonResult{Columns: r.Columns, KeyColumns: r.KeyColumns, Epsilon: r.Epsilon, Delta: r.Delta, Rho: r.Rho,
		Mechanism: r.Mechanism, Nodes: r.Nodes, SmallCountThreshold: r.SmallCountThreshold, Exact: r.Exact, Rows: []jsonRow{}, KeyNames: r.KeyNames}
	for _, row := range r.Rows {
		jr := jsonRow{Keys: row.Keys, Values: []jsonNumber{}}
		if jr.Keys == nil {
			jr.Keys = []string{}
		}
		for _, n := range row.Values {
			jn := jsonNumber{Display: n.Display, Suppressed: n.Suppressed}
			if !n.Suppressed {
				jn.Value, jn.CILow, jn.CIHigh, jn.Variance = fptr(n.Value), fptr(n.CILow), fptr(n.CIHigh), fptr(n.Variance)
			}
			jr.Values = append(jr.Values, jn)
		}
		out.Rows = append(out.Rows, jr)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

// WriteCSV writes a header (key columns, each followed by KEY_name when the
// result names its codes, then per aggregate: name, name_ci_low,
// name_ci_high, name_suppressed) and one line per row. Every number column
// is numeric, so that R and pandas read it as numbers: a suppressed number
// (a count below the small-count threshold, or a ratio of one) is empty in
// its value and interval columns, with name_suppressed true.
func (r *Result) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	named := len(r.KeyNames) > 0
	var head []string
	for _, c := range r.Columns[:r.KeyColumns] {
		head = append(head, c)
		if named {
			head = append(head, c+"_name")
		}
	}
	for _, c := range r.Columns[r.KeyColumns:] {
		head = append(head, c, c+"_ci_low", c+"_ci_high", c+"_suppressed")
	}
	if err := cw.Write(head); err != nil {
		return err
	}
	num := func(v float64) string {
		if math.IsNaN(v) {
			return ""
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	for _, row := range r.Rows {
		var line []string
		for _, k := range row.Keys {
			line = append(line, k)
			if named {
				line = append(line, r.KeyNames[k])
			}
		}
		for _, n := range row.Values {
			if n.Suppressed {
				line = append(line, "", "", "", "true")
				continue
			}
			line = append(line, num(n.Value), num(n.CILow), num(n.CIHigh), "false")
		}
		if err := cw.Write(line); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
