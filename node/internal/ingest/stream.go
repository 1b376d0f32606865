package ingest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node/internal/csvimport"
)

// Streaming: a bulk import (node/internal/store ImportBulk) reads files of
// CDM rows (CSV with a header row, or CDM-row NDJSON; plain or .gz) in
// chunks of a bounded number of records instead of whole, so that its
// memory does not grow with the input. Each chunk goes through the same
// decoders (csvimport), code canonicalisation and code map as Read; bad
// records name the file and line as Read's do. FHIR inputs and archives
// are not streamed (Read them: FHIR resources reference each other across
// a file, so a chunk is not self-contained).

// DefaultChunkRows is the number of records a streamed chunk holds by
// default.
const DefaultChunkRows = 64 << 10

// StreamFiles lists the files under paths for Stream (directories walked
// in name order, dot files skipped), split by the table each holds (o.Table
// or its name, cdm.TableOfFile) into the patients' files and the others.
// A file that is not CDM CSV or CDM-row NDJSON is refused (ErrFormat).
func StreamFiles(o Options, paths []string) (patients, others []string, err error) {
	var walk func(p string) error
	walk = func(p string) error {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
		if st.IsDir() {
			ents, err := os.ReadDir(p)
			if err != nil {
				return fmt.Errorf("ingest: %w", err)
			}
			sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
			for _, e := range ents {
				if !strings.HasPrefix(e.Name(), ".") {
					if err := walk(filepath.Join(p, e.Name())); err != nil {
						return err
					}
				}
			}
			return nil
		}
		f, _ := formatOf(p)
		if f != formatCDMCSV && f != formatCDMNDJSON {
			return fmt.Errorf("%w: %s: a bulk import reads CDM rows only (.csv, or .ndjson/.jsonl named by a table; optionally .gz); import FHIR and archives without --bulk", ErrFormat, p)
		}
		table := o.Table
		if table == "" {
			var ok bool
			if table, ok = cdm.TableOfFile(p); !ok {
				return fmt.Errorf("%w: %s: cannot tell the table from the file name", ErrFormat, p)
			}
		}
		if table == cdm.TablePatients {
			patients = append(patients, p)
		} else {
			others = append(others, p)
		}
		return nil
	}
	for _, p := range paths {
		if err := walk(p); err != nil {
			return nil, nil, err
		}
	}
	return patients, others, nil
}

// Stream reads files (as StreamFiles lists them) in chunks of at most
// chunkRows records (DefaultChunkRows if <= 0) and calls emit with each:
// a fresh batch that emit may keep. Bad records are in the batch's
// Errors, with their file and line; the caller decides whether to go on.
// Stream holds one chunk's text and one decoded batch at a time. It stops
// at emit's first error, which it returns.
func Stream(ctx context.Context, o Options, files []string, chunkRows int, emit func(*cdm.Batch) error) error {
	if chunkRows <= 0 {
		chunkRows = DefaultChunkRows
	}
	for _, p := range files {
		if err := streamFile(ctx, o, p, chunkRows, emit); err != nil {
			return err
		}
	}
	return nil
}

func streamFile(ctx context.Context, o Options, path string, chunkRows int, emit func(*cdm.Batch) error) error {
	f, gz := formatOf(path)
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	defer file.Close()
	var in io.Reader = &progressReader{r: file, fn: o.OnRead}
	if gz {
		zr, err := gunzip(in)
		if err != nil {
			return fmt.Errorf("%w: %s: not gzip data: %v", ErrFormat, path, err)
		}
		defer zr.Close()
		in = zr
	}
	br := bufio.NewReaderSize(in, 1<<20)
	csv := f == formatCDMCSV
	var header []byte
	line := 0 // physical lines read
	if csv {
		h, err := readRecord(br, true)
		if err != nil && err != io.EOF {
			return fmt.Errorf("ingest: read %s: %w", path, err)
		}
		header = h
		line += bytes.Count(h, []byte{'\n'})
		if len(h) > 0 && h[len(h)-1] != '\n' {
			header = append(header, '\n')
			line++
		}
	}
	var chunk bytes.Buffer
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk.Reset()
		chunk.Write(header)
		first := line // physical lines before this chunk's first record
		rows, eof := 0, false
		for rows < chunkRows {
			rec, err := readRecord(br, csv)
			if len(rec) > 0 {
				chunk.Write(rec)
				line += bytes.Count(rec, []byte{'\n'})
				if rec[len(rec)-1] != '\n' {
					chunk.WriteByte('\n')
					line++
				}
				rows++
			}
			if err == io.EOF {
				eof = true
				break
			}
			if err != nil {
				return fmt.Errorf("ingest: read %s: %w", path, err)
			}
		}
		if rows > 0 || (csv && first == 0) {
			b := &cdm.Batch{}
			if csv {
				csvimport.Parse(path, &chunk, o.Table, b)
			} else {
				csvimport.ParseNDJSON(path, &chunk, o.Table, b)
			}
			// The decoder counted lines from the chunk's start; the
			// header (CSV) is line 1 of both.
			off := first
			if csv {
				off = first - bytes.Count(header, []byte{'\n'})
			}
			shiftLines(b, off)
			canonicalCodes(&b.Records)
			applyCodeMap(&b.Records, o.CodeMap)
			if err := emit(b); err != nil {
				return err
			}
		}
		if eof {
			return nil
		}
	}
}

// shiftLines adds off to the line numbers of b's origins and errors.
func shiftLines(b *cdm.Batch, off int) {
	if off == 0 {
		return
	}
	for i := range cdm.Schema {
		os := b.Origins.Of(cdm.Schema[i].Name)
		for j := range os {
			if os[j].Line > 0 {
				os[j].Line += off
			}
		}
	}
	for _, e := range b.Errors {
		if e.Origin.Line > 0 {
			e.Origin.Line += off
		}
	}
}

// readRecord reads one record: one line, or for CSV as many lines as a
// quoted field spans (an odd number of quotes so far means the newline is
// inside a field). It returns io.EOF with the last, unterminated record.
func readRecord(br *bufio.Reader, csv bool) ([]byte, error) {
	var out []byte
	quotes := 0
	for {
		l, err := br.ReadSlice('\n')
		out = append(out, l...)
		if csv {
			quotes += bytes.Count(l, []byte{'"'})
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil:
			return out, err
		case quotes%2 == 0:
			return out, nil
		}
	}
}
