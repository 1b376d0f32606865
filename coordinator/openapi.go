package coordinator

import (
	"net/http"

	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// OpenAPIPath is where the HTTP/JSON API serves its OpenAPI document.
const OpenAPIPath = "/v1/openapi.json"

// openAPIDoc is the document, read once.
var openAPIDoc = coordinatorv1.OpenAPI()

// serveOpenAPI serves the OpenAPI document of the HTTP/JSON API. It needs
// no authentication: it describes the routes and messages, which are
// public in the source, and holds nothing of any network.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(openAPIDoc)
}
