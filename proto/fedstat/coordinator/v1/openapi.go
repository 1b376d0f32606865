package coordinatorv1

import _ "embed"

// openAPI is made by proto/gen.sh from coordinator.proto and its HTTP rules
// (coordinator_http.yaml, coordinator_openapi.yaml); proto/check.sh fails
// when it is out of date.
//
//go:embed coordinator.swagger.json
var openAPI []byte

// OpenAPI returns the OpenAPI (Swagger 2.0) document of the coordinator's
// HTTP/JSON API, as JSON. The caller may modify the returned slice.
func OpenAPI() []byte {
	return append([]byte(nil), openAPI...)
}
