package coordinator_test

import (
	"encoding/json"
	"testing"

	"github.com/go-openapi/loads"
	"github.com/go-openapi/strfmt"
	"github.com/go-openapi/validate"

	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// TestOpenAPIDocumentValid validates the served OpenAPI (Swagger 2.0)
// document with go-openapi/validate, the validator of the go-swagger
// toolchain: schema, references, parameters, operation ids. scripts/test.sh
// also runs openapi-spec-validator on it where Python has it.
func TestOpenAPIDocumentValid(t *testing.T) {
	doc, err := loads.Analyzed(json.RawMessage(coordinatorv1.OpenAPI()), "")
	if err != nil {
		t.Fatalf("the OpenAPI document does not load: %v", err)
	}
	if err := validate.Spec(doc, strfmt.Default); err != nil {
		t.Fatalf("the OpenAPI document is not valid:\n%v", err)
	}
	// The validator must catch a broken document: a reference to nothing.
	var raw map[string]any
	if err := json.Unmarshal(coordinatorv1.OpenAPI(), &raw); err != nil {
		t.Fatal(err)
	}
	raw["definitions"].(map[string]any)["v1QueryStatus"] = map[string]any{"$ref": "#/definitions/noSuchThing"}
	b, _ := json.Marshal(raw)
	bad, err := loads.Analyzed(b, "")
	if err == nil {
		err = validate.Spec(bad, strfmt.Default)
	}
	if err == nil {
		t.Fatal("a document with a dangling reference passed the validator")
	}
}
