package ingest

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/schollz/progressbar/v3"
)

// path reads a file, a directory (recursively, in name order, dot files
// skipped) or an archive.
func (r *reader) path(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	if st.IsDir() {
		ents, err := os.ReadDir(path)
		if err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		// Bulk Data manifests first: the files they list are read through
		// them (manifest.go), not again by the walk.
		manifests := map[string]*manifest{}
		claimed := map[string]bool{}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
				continue
			}
			if m, ok := readManifest(filepath.Join(path, e.Name())); ok {
				manifests[e.Name()] = m
				for name := range m.claims(path) {
					claimed[name] = true
				}
			}
		}
		for _, e := range ents {
			name := e.Name()
			if strings.HasPrefix(name, ".") || (claimed[name] && manifests[name] == nil) {
				continue
			}
			full := filepath.Join(path, name)
			var err error
			switch m := manifests[name]; {
			case m != nil:
				err = r.manifest(full, m)
			case e.Type().IsRegular():
				err = r.file(full) // told from a manifest above
			default:
				err = r.path(full)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	if m, ok := readManifest(path); ok {
		return r.manifest(path, m)
	}
	return r.file(path)
}

// file reads one file (not a manifest).
func (r *reader) file(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	defer f.Close()
	return r.input(path, &progressReader{r: f, fn: r.o.OnRead})
}

// tar reads the regular, not hidden members of an archive as inputs named
// archive/member.
func (r *reader) tar(name string, in io.Reader) error {
	tr := tar.NewReader(in)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("ingest: read %s: %w", name, err)
		}
		if h.Typeflag != tar.TypeReg || strings.HasPrefix(filepath.Base(h.Name), ".") {
			continue
		}
		if err := r.input(name+"/"+h.Name, tr); err != nil {
			return err
		}
	}
}

func gunzip(in io.Reader) (io.ReadCloser, error) { return gzip.NewReader(in) }

type progressReader struct {
	r  io.Reader
	fn func(int64)
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	if pr.fn != nil && n > 0 {
		pr.fn(int64(n))
	}
	return n, err
}

// inputSize sums the sizes of the files at paths (directories walked).
func inputSize(paths []string) (int64, error) {
	var n int64
	for _, p := range paths {
		err := filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					n += fi.Size()
				}
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("ingest: %w", err)
		}
	}
	return n, nil
}

// progress reports bytes read: a bar on Options.Progress, or log lines on
// Options.Logger, and Options.OnRead.
type progress struct {
	bar    *progressbar.ProgressBar
	onRead func(int64)
	n      atomic.Int64
	total  int64
	stop   chan struct{}
	ended  chan struct{}
}

func newProgress(ctx context.Context, o Options, total int64) *progress {
	p := &progress{onRead: o.OnRead, total: total, stop: make(chan struct{}), ended: make(chan struct{})}
	switch {
	case o.Progress != nil:
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(o.Progress),
			progressbar.OptionSetDescription("reading"),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(o.Progress) }),
		)
		close(p.ended)
		return p
	case o.Logger == nil:
		close(p.ended)
		return p
	}
	go func() {
		defer close(p.ended)
		t := time.NewTicker(3 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				o.Logger.Info("admin: reading input", "bytes", p.n.Load(), "of", p.total,
					"percent", strconv.FormatFloat(100*float64(p.n.Load())/float64(max(p.total, 1)), 'f', 1, 64))
			}
		}
	}()
	return p
}

func (p *progress) add(n int64) {
	p.n.Add(n)
	if p.bar != nil {
		_ = p.bar.Add64(n)
	}
	if p.onRead != nil {
		p.onRead(n)
	}
}

func (p *progress) done() {
	if p.bar != nil {
		_ = p.bar.Finish()
		return
	}
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.ended
}
