// Package web is the coordinator's dashboard: static HTML, CSS and plain
// ES modules embedded in the binary, with hand-written SVG charts. It has no
// front-end dependencies and loads nothing from the network but the
// coordinator's own HTTP/JSON API, so it works offline.
//
// The pages call the API with the session cookie that POST /v1/session sets;
// every piece of data comes from the API, which decides per role what the
// caller may see. The static files themselves hold no data.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Files returns the embedded static files (index.html at the root).
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree always has static/
	}
	return sub
}

// csp allows only the coordinator's own origin: no inline scripts, no
// third-party hosts, no framing.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// Handler serves the dashboard's static files.
func Handler() http.Handler {
	files := http.FileServerFS(Files())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
