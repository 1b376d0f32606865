package coordinator

// HTTPRoute is a route of the HTTP/JSON API as the handler registers it.
type HTTPRoute struct {
	Method, Path, RPC string
}

// HTTPRoutes returns the routes HTTPHandler registers for the RPCs (not
// the OpenAPI document itself, nor the dashboard).
func HTTPRoutes() []HTTPRoute {
	var out []HTTPRoute
	for _, r := range (&httpAPI{}).routes() {
		out = append(out, HTTPRoute{r.method, r.path, r.rpc})
	}
	return out
}
