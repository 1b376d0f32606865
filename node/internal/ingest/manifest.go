package ingest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// A FHIR Bulk Data export ($export) ends with a manifest: a JSON object
// with transactionTime, request and output[] (type, url of each NDJSON
// file), and error[] (OperationOutcome files). A folder holding an export
// usually holds its manifest too (manifest.json, or any other name ending
// in .json). The manifest is recognised by its content (a JSON object with
// an output array and no resourceType) and used to find the files: each
// output url names a file by its last path segment, looked up in the
// manifest's folder as it is or with .gz; the file is read as FHIR NDJSON
// whatever its name (gzip recognised by its content). A listed file that
// is not there is a bad record naming the manifest and output[i].url.
// The error[] files are not imported. Files of the folder the manifest
// does not list are read as usual.

// manifest is the part of a Bulk Data manifest the importer uses.
type manifest struct {
	ResourceType *string `json:"resourceType"`
	Output       *[]struct {
		Type string `json:"type"`
		URL  string `json:"url"`
	} `json:"output"`
}

// maxManifest bounds the size of a file read whole to tell whether it is
// a manifest (a manifest lists about 100 bytes per file).
const maxManifest = 64 << 20

// readManifest reports whether the file at p (named *.json) is a Bulk
// Data manifest, and returns it. It reads the first bytes of every JSON
// file: a FHIR document whose first member is resourceType (every Bundle
// and resource seen so far) is told apart without reading further.
func readManifest(p string) (*manifest, bool) {
	if !strings.HasSuffix(strings.ToLower(p), ".json") {
		return nil, false
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, false // the walk reports it
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 512)
	head, _ := br.Peek(512)
	head = bytes.TrimLeft(head, " \t\r\n")
	if rest, ok := bytes.CutPrefix(head, []byte("{")); ok && bytes.HasPrefix(bytes.TrimLeft(rest, " \t\r\n"), []byte(`"resourceType"`)) {
		return nil, false
	}
	if !bytes.HasPrefix(head, []byte("{")) {
		return nil, false
	}
	if st, err := f.Stat(); err != nil || st.Size() > maxManifest {
		return nil, false
	}
	data, err := io.ReadAll(br)
	if err != nil {
		return nil, false
	}
	return manifestIn(data)
}

// manifestIn reports whether data is a Bulk Data manifest.
func manifestIn(data []byte) (*manifest, bool) {
	d := bytes.TrimLeft(data, " \t\r\n")
	if !bytes.HasPrefix(d, []byte("{")) || bytes.HasPrefix(bytes.TrimLeft(d[1:], " \t\r\n"), []byte(`"resourceType"`)) {
		return nil, false
	}
	var m manifest
	if json.Unmarshal(data, &m) != nil || m.ResourceType != nil || m.Output == nil {
		return nil, false
	}
	return &m, true
}

// outputFile returns the local name (in dir) of a manifest's output url,
// or "" if there is no such file.
func outputFile(dir, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Path == "" {
		return ""
	}
	base := path.Base(u.Path)
	if base == "." || base == "/" || strings.HasPrefix(base, ".") {
		return ""
	}
	for _, name := range []string{base, base + ".gz"} {
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil && st.Mode().IsRegular() {
			return name
		}
	}
	return ""
}

// claims returns the local names of the files m lists (those found).
func (m *manifest) claims(dir string) map[string]bool {
	out := map[string]bool{}
	for _, o := range *m.Output {
		if name := outputFile(dir, o.URL); name != "" {
			out[name] = true
		}
	}
	return out
}

// manifest reads the files a manifest at p lists, in its order.
func (r *reader) manifest(p string, m *manifest) error {
	dir := filepath.Dir(p)
	r.res.Manifests++
	for i, o := range *m.Output {
		name := outputFile(dir, o.URL)
		if name == "" {
			r.failAt(p, "output["+strconv.Itoa(i)+"].url",
				fmt.Sprintf("no file for %q (want %q, or with .gz, in %s)", o.URL, baseOf(o.URL), dir))
			continue
		}
		if err := r.ndjsonFile(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func baseOf(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		return path.Base(u.Path)
	}
	return rawURL
}

// ndjsonFile reads one file a manifest lists as FHIR NDJSON, gzip or not
// by its content.
func (r *reader) ndjsonFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(&progressReader{r: f, fn: r.o.OnRead})
	var in io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gunzip(br)
		if err != nil {
			r.fail(p, "not gzip data: "+err.Error())
			return nil
		}
		defer zr.Close()
		in = zr
	}
	r.res.formats[p] = formatFHIRNDJSON
	r.res.Files++
	return r.fhir.ParseNDJSON(p, in)
}
