package stattest

import "strings"

// ModelSchema is the study of ModelCases: a trial with number, categorical,
// date and survival columns.
const ModelSchema = `name = "trial"
unit = "row"
[[columns]]
name = "age"
type = "int"
min = 18
max = 90
[[columns]]
name = "arm"
type = "string"
values = ["a", "b"]
[[columns]]
name = "grade"
type = "int"
min = 0
max = 100
[[columns]]
name = "site"
type = "int"
min = 1
max = 50
[[columns]]
name = "visit"
type = "date"
[[columns]]
name = "time"
type = "int"
min = 0
max = 1000
[[columns]]
name = "status"
type = "int"
min = 1
max = 2
`

// ModelCase is a statistics request on ModelSchema's table and what must
// become of it. The command line's tests (`fedstat stats METHOD`) and the
// coordinator's (POST /v1/stats/{method}) run every case, so that both
// apply the same model rules and limits (stats.Analysis.Prepare).
type ModelCase struct {
	Name   string
	Method string // km, cox, logit or linreg
	// Outcome is logit's condition or linreg's number column.
	Outcome             string
	Covariates, Factors []string
	Rounds              int
	// Refused is a text the refusal must contain, before any query; ""
	// when the request is accepted (and goes on to query). Survival
	// methods use the columns time and status with event 2.
	Refused string
}

// ModelCases are the shared cases.
var ModelCases = []ModelCase{
	{Name: "a covariate named twice", Method: "logit", Outcome: "arm = 'b'", Covariates: []string{"age", "age"}, Refused: "twice"},
	{Name: "a column as covariate and factor", Method: "logit", Outcome: "arm = 'b'", Covariates: []string{"age"}, Factors: []string{"age"}, Refused: "twice"},
	{Name: "linreg's outcome as a covariate", Method: "linreg", Outcome: "age", Covariates: []string{"age"}, Refused: "twice"},
	{Name: "linreg without an outcome", Method: "linreg", Covariates: []string{"age"}, Refused: "outcome"},
	{Name: "a factor of 101 levels", Method: "logit", Outcome: "arm = 'b'", Factors: []string{"grade"}, Refused: "at most 50"},
	{Name: "51 covariates", Method: "logit", Outcome: "arm = 'b'", Covariates: strings.Fields(strings.Repeat("age ", 51)), Refused: "at most 50"},
	{Name: "50 terms", Method: "logit", Outcome: "arm = 'b'", Covariates: []string{"age"}, Factors: []string{"site"}},
	{Name: "51 terms with linreg's outcome", Method: "linreg", Outcome: "grade", Covariates: []string{"age"}, Factors: []string{"site"}, Refused: "at most 50"},
	{Name: "a string covariate", Method: "cox", Covariates: []string{"arm"}, Refused: "not a number column"},
	{Name: "a date factor", Method: "cox", Factors: []string{"visit"}, Refused: "factor"},
	{Name: "an unknown column", Method: "logit", Outcome: "arm = 'b'", Covariates: []string{"nosuch"}, Refused: "no such column"},
	{Name: "21 rounds", Method: "logit", Outcome: "arm = 'b'", Covariates: []string{"age"}, Rounds: 21, Refused: "rounds: at most 20"},
	{Name: "21 rounds of Cox", Method: "cox", Covariates: []string{"age"}, Rounds: 21, Refused: "rounds: at most 20"},
	{Name: "logit with a factor, 20 rounds", Method: "logit", Outcome: "arm = 'b'", Covariates: []string{"age"}, Factors: []string{"arm"}, Rounds: 20},
	{Name: "linreg", Method: "linreg", Outcome: "age", Covariates: []string{"grade"}, Factors: []string{"arm"}},
	{Name: "cox", Method: "cox", Covariates: []string{"age"}, Factors: []string{"arm"}},
	{Name: "km", Method: "km"},
}
