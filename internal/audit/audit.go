// Package audit is fedstat's hash-chained, append-only audit log. Every party
// (node, coordinator) appends one entry for every step it takes: who asked
// what, what was debited, what was released. Anyone holding the file can
// check with Verify that no entry was changed, inserted, removed or
// reordered after it was written, except at the end (see below).
//
// # File format
//
// A log is a file of JSON lines (mode 0600), one entry per line, each line
// ending in "\n". An entry looks like
//
//	{"seq":1,"time":"2026-11-23T12:00:00.123456789Z","actor":"node-a","action":"query.debit","query_id":"q-42","details":{"rho":0.1},"prev":"000…000","hash":"9f2c…"}
//
// and is written in exactly one form, its canonical encoding:
//
//   - the keys in the order above, all of them always present, no
//     whitespace anywhere;
//   - seq: the entry's number, a decimal integer; the first entry has 1
//     and every entry the next number;
//   - time: UTC in RFC 3339 with nanoseconds and trailing zeros removed
//     (Go's time.RFC3339Nano), strictly later than the previous entry's;
//   - actor, action, query_id: JSON strings as Go's encoding/json writes
//     them (query_id is "" when the step has no query);
//   - details: a JSON object, {} when empty, as Go's encoding/json writes a
//     map (keys sorted, HTML-safe escaping), numbers kept as written;
//   - prev: the hash of the previous entry, 64 lowercase hex digits; 64
//     zeros for the first entry;
//   - hash: lowercase hex SHA-256 of the canonical encoding of the entry
//     without the hash, that is of the bytes
//     {"seq":…,"time":…,"actor":…,"action":…,"query_id":…,"details":…,"prev":…}
//     (the line up to and excluding `,"hash":`, followed by `}`).
//
// Verify reads a line, decodes it, re-encodes it canonically and requires the
// line to be byte for byte that encoding. So every byte of the file is
// covered: a changed byte either breaks the JSON, or changes a value (and so
// the hash, or the seq, prev or time checks), or changes only the form (not
// canonical). Each entry's hash covers its prev, hence the whole history
// before it.
//
// # What the chain does not show
//
// Removing whole entries from the end leaves a valid, shorter log: the chain
// is verifiable only up to its last entry. To detect truncation, record the
// head (seq and hash that Verify and Log.Head report) somewhere else from time
// to time: in another party's log, the coordinator's store, an operator's
// notes. Likewise, someone who can write the file can rewrite the whole
// chain from the first changed entry on: the log shows accidental and
// partial tampering, and full rewriting once a head has been recorded
// elsewhere. Keyed MACs or signatures over entries are out of scope for now.
//
// Entries must never carry raw records or key material: only ids, codes of
// what was asked, amounts debited and released aggregates as the party
// released them.
package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Errors.
var (
	// ErrCorrupt: the log file is not a valid chain (Open); the error
	// names the line.
	ErrCorrupt = errors.New("audit: log corrupt")
	// ErrTornTail: the file ends in an incomplete entry, as a crash during
	// an append leaves it. Wraps ErrCorrupt. Options.RepairTornTail cuts it
	// off.
	ErrTornTail = fmt.Errorf("%w: incomplete last entry", ErrCorrupt)
	// ErrInsecure: the log file is readable or writable by group or others.
	ErrInsecure = errors.New("audit: log file accessible by group or others")
	// ErrInUse: another process has the log open for appending.
	ErrInUse = errors.New("audit: log file in use by another process")
	// ErrClosed: the log was closed, or a failed write left it unusable.
	ErrClosed = errors.New("audit: log closed")
	// ErrBadEntry: the entry to append lacks an actor or an action, or its
	// details cannot be encoded as JSON.
	ErrBadEntry = errors.New("audit: bad entry")
	// ErrTampered: the log file was replaced, deleted, truncated, appended
	// to or edited by someone else while a Log had it open. It comes as a
	// *TamperError; the Log refuses every further append (a new Open
	// checks the whole file and says whether the chain still holds).
	ErrTampered = errors.New("audit: log file changed by someone else")
	// ErrHeadMissing: the chain verifies but holds no entry with the head
	// recorded earlier (Options.ExpectHead, VerifyExpectHead): the log was
	// cut below it or rewritten. Wraps ErrCorrupt.
	ErrHeadMissing = fmt.Errorf("%w: expected head not in the chain", ErrCorrupt)
)

// TamperError says how the file of an open Log was changed underneath it.
type TamperError struct {
	// Path is the log's path.
	Path string
	// What is "replaced", "deleted", "truncated", "grown" or "edited".
	What string
	// Detail says what was seen.
	Detail string
}

func (e *TamperError) Error() string {
	return fmt.Sprintf("audit: %s was %s by someone else while this process appends to it: %s; "+
		"refusing to append (entries would be lost or the chain forked): stop, inspect it with `fedstat audit verify`, and restart",
		e.Path, e.What, e.Detail)
}

// Is makes errors.Is(err, ErrTampered) true.
func (e *TamperError) Is(target error) bool { return target == ErrTampered }

// ZeroHash is the prev of the first entry.
var ZeroHash = strings.Repeat("0", 64)

// Entry is one step a party took.
type Entry struct {
	// Seq numbers entries from 1. Set by Append.
	Seq uint64
	// Time is when the entry was appended, UTC. Set by Append.
	Time time.Time
	// Actor is who took or asked for the step: a node or coordinator id,
	// an analyst. Required.
	Actor string
	// Action names the step, e.g. "query.received", "budget.debit",
	// "partial.released". Required.
	Action string
	// QueryID is the query the step belongs to, if any.
	QueryID string
	// Details carries what else matters (rho debited, policy that refused,
	// nodes that answered), JSON-encodable. Read back, numbers are
	// json.Number.
	Details map[string]any
	// Prev is the hash of the previous entry. Set by Append.
	Prev string
	// Hash is the entry's own hash. Set by Append.
	Hash string
}

// MarshalJSON returns the entry's canonical encoding with its hash, as a
// line of the log holds it (without the newline). It does not check or
// recompute the hash.
func (e Entry) MarshalJSON() ([]byte, error) {
	details := []byte("{}")
	if len(e.Details) > 0 {
		raw, err := json.Marshal(e.Details)
		if err != nil {
			return nil, err
		}
		if details, err = canonicalDetails(raw); err != nil {
			return nil, err
		}
	}
	l := line(body(e.Seq, e.Time, e.Actor, e.Action, e.QueryID, details, e.Prev), e.Hash)
	return l[:len(l)-1], nil
}

// wire is an entry as decoded from a line.
type wire struct {
	Seq     *uint64         `json:"seq"`
	Time    *string         `json:"time"`
	Actor   *string         `json:"actor"`
	Action  *string         `json:"action"`
	QueryID *string         `json:"query_id"`
	Details json.RawMessage `json:"details"`
	Prev    *string         `json:"prev"`
	Hash    *string         `json:"hash"`
}

// canonicalDetails returns the canonical encoding of a details value given as
// JSON: decoded with numbers kept as written, re-encoded by encoding/json.
func canonicalDetails(raw []byte) ([]byte, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return []byte("{}"), nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(m)
}

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // strings always encode
	return append(b, q...)
}

// body returns the canonical encoding without the hash, ending in "}".
func body(seq uint64, t time.Time, actor, action, queryID string, details []byte, prev string) []byte {
	b := make([]byte, 0, 256+len(details))
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"time":"`...)
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","actor":`...)
	b = appendString(b, actor)
	b = append(b, `,"action":`...)
	b = appendString(b, action)
	b = append(b, `,"query_id":`...)
	b = appendString(b, queryID)
	b = append(b, `,"details":`...)
	b = append(b, details...)
	b = append(b, `,"prev":`...)
	b = appendString(b, prev)
	return append(b, '}')
}

func hashOf(body []byte) string {
	s := sha256.Sum256(body)
	return hex.EncodeToString(s[:])
}

// line returns the full line of an entry: body with the hash, and "\n".
func line(body []byte, hash string) []byte {
	l := make([]byte, 0, len(body)+80)
	l = append(l, body[:len(body)-1]...)
	l = append(l, `,"hash":"`...)
	l = append(l, hash...)
	return append(l, "\"}\n"...)
}

// VerifyError names the first bad entry of a log.
type VerifyError struct {
	// Line is the 1-based line number in the file.
	Line int
	// Seq is the entry's seq if it could be read, else the seq it should
	// have had.
	Seq int
	// Reason says what is wrong.
	Reason string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit: line %d (seq %d): %s", e.Line, e.Seq, e.Reason)
}

// parsed is one verified line.
type parsed struct {
	e     Entry
	bytes int // length of the line including "\n"
}

// parseLine decodes and checks one line (without "\n") on its own: JSON,
// fields, hash and canonical form. It does not check the chain.
func parseLine(raw []byte) (Entry, string) {
	var w wire
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&w); err != nil {
		return Entry{}, "bad JSON: " + err.Error()
	}
	if dec.More() || dec.InputOffset() != int64(len(raw)) {
		return Entry{}, "bad JSON: extra data after the entry"
	}
	if w.Seq == nil || w.Time == nil || w.Actor == nil || w.Action == nil || w.QueryID == nil || w.Details == nil || w.Prev == nil || w.Hash == nil {
		return Entry{}, "missing field (want seq, time, actor, action, query_id, details, prev, hash)"
	}
	e := Entry{Seq: *w.Seq, Actor: *w.Actor, Action: *w.Action, QueryID: *w.QueryID, Prev: *w.Prev, Hash: *w.Hash}
	t, err := time.Parse(time.RFC3339Nano, *w.Time)
	if err != nil {
		return e, "bad time: " + err.Error()
	}
	e.Time = t.UTC()
	details, err := canonicalDetails(w.Details)
	if err != nil {
		return e, "bad details: " + err.Error()
	}
	dec = json.NewDecoder(bytes.NewReader(details))
	dec.UseNumber()
	if err := dec.Decode(&e.Details); err != nil {
		return e, "bad details: " + err.Error()
	}
	b := body(e.Seq, e.Time, e.Actor, e.Action, e.QueryID, details, e.Prev)
	if h := hashOf(b); h != e.Hash {
		return e, fmt.Sprintf("hash mismatch: entry hashes to %s, line says %s", h, e.Hash)
	}
	if !bytes.Equal(line(b, e.Hash), append(raw, '\n')) {
		return e, "entry not in canonical form (altered spacing, escaping, key order or case)"
	}
	return e, ""
}

// Verify reads a whole log from r and checks it: every line a canonical
// entry with a correct hash, seq contiguous from 1, each prev the hash of the
// entry before (64 zeros for the first), times strictly increasing, the file
// ending in "\n". It returns the number of entries, or a *VerifyError naming
// the first bad one (an error reading r is returned as is). An empty input is
// a valid log of 0 entries. See the package doc for what it cannot detect.
func Verify(r io.Reader) (n int, err error) {
	n, _, err = VerifyHead(r)
	return n, err
}

// VerifyHead is Verify that also returns the hash of the last entry (the
// head of the chain; ZeroHash for an empty log).
func VerifyHead(r io.Reader) (n int, head string, err error) {
	n, head, _, err = verifyChain(r, "", nil)
	return n, head, err
}

// VerifyScan is VerifyHead that also calls fn with each entry once it has
// verified it (its form, seq, link to the entry before and time), in
// order: one pass where Verify then Scan would read the log twice. It stops
// at the first entry that does not verify (a *VerifyError, fn having seen
// the entries before it) or at fn's first error, which it returns as is.
func VerifyScan(r io.Reader, fn func(line int, e Entry) error) (n int, head string, err error) {
	n, head, _, err = verifyChain(r, "", fn)
	return n, head, err
}

// VerifyExpectHead is VerifyHead that also requires the chain to hold an
// entry whose hash is expect (a head recorded elsewhere earlier) and
// returns that entry's seq. A chain that verifies without it fails with
// ErrHeadMissing: the log was cut below that entry or rewritten before it.
func VerifyExpectHead(r io.Reader, expect string) (n int, head string, seq int, err error) {
	n, head, seq, err = verifyChain(r, expect, nil)
	if err == nil && seq == 0 {
		err = fmt.Errorf("%w: the %d entries verify but none has the hash %s: the log was cut below it or rewritten", ErrHeadMissing, n, expect)
	}
	return n, head, seq, err
}

// verifyChain verifies a log and returns the seq of the entry whose hash is
// expect (0 if none or expect is empty); fn, if not nil, sees each entry
// once it verified.
func verifyChain(r io.Reader, expect string, fn func(line int, e Entry) error) (n int, head string, found int, err error) {
	expect = strings.ToLower(expect)
	br := bufio.NewReaderSize(r, 64<<10)
	prev, last := ZeroHash, time.Time{}
	for lineNo := 1; ; lineNo++ {
		raw, err := br.ReadBytes('\n')
		if err == io.EOF && len(raw) == 0 {
			return n, prev, found, nil
		}
		if err != nil && err != io.EOF {
			return n, prev, found, fmt.Errorf("audit: read: %w", err)
		}
		want := n + 1
		if err == io.EOF {
			return n, prev, found, &VerifyError{Line: lineNo, Seq: want, Reason: "last line not terminated by a newline (torn write or truncated file)"}
		}
		e, reason := parseLine(raw[:len(raw)-1])
		bad := func(why string) error {
			seq := want
			if e.Seq != 0 {
				seq = int(e.Seq)
			}
			return &VerifyError{Line: lineNo, Seq: seq, Reason: why}
		}
		switch {
		case reason != "" && e.Seq == 0 && e.Hash == "":
			return n, prev, found, bad(reason) // could not even read it
		case e.Seq != uint64(want):
			return n, prev, found, bad(fmt.Sprintf("seq %d where %d was expected (entries missing, inserted or reordered)", e.Seq, want))
		case e.Prev != prev:
			return n, prev, found, bad(fmt.Sprintf("broken chain: prev %s is not the hash %s of the entry before", short(e.Prev), short(prev)))
		case reason != "":
			return n, prev, found, bad(reason)
		case n > 0 && !e.Time.After(last):
			return n, prev, found, bad(fmt.Sprintf("time %s not after the previous entry's %s", e.Time.Format(time.RFC3339Nano), last.Format(time.RFC3339Nano)))
		}
		n, prev, last = n+1, e.Hash, e.Time
		if expect != "" && e.Hash == expect {
			found = n
		}
		if fn != nil {
			if err := fn(lineNo, e); err != nil {
				return n, prev, found, err
			}
		}
	}
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

// Scan reads the entries of a log in order and calls fn for each with its
// line number. It checks each line on its own (JSON, hash, canonical form)
// but not the chain; use Verify for that. It stops at the first unreadable
// line with a *VerifyError, or when fn returns an error.
func Scan(r io.Reader, fn func(line int, e Entry) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for lineNo := 1; ; lineNo++ {
		raw, err := br.ReadBytes('\n')
		if err == io.EOF && len(raw) == 0 {
			return nil
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("audit: read: %w", err)
		}
		raw = bytes.TrimSuffix(raw, []byte("\n"))
		e, reason := parseLine(raw)
		if reason != "" {
			return &VerifyError{Line: lineNo, Seq: int(e.Seq), Reason: reason}
		}
		if err := fn(lineNo, e); err != nil {
			return err
		}
	}
}

// Options configure OpenWith.
type Options struct {
	// RepairTornTail cuts off an incomplete last line (left by a crash
	// during an append, which never returned success for it) instead of
	// failing with ErrTornTail. The cut bytes are saved to the file
	// <path>.torn-<unix-nanos> (0600) and logged. Defaults to false.
	RepairTornTail bool
	// TailOnly checks only the last two entries at open (their form, hash
	// and link) instead of the whole chain. The whole chain takes about
	// 1 s per 100,000 entries (10 us an entry, measured on a 2-core VM);
	// with TailOnly an open can accept a log that Verify rejects (an
	// earlier entry edited). Defaults to false: Open and Verify agree.
	TailOnly bool
	// VerifyAll is the default now and has no effect.
	//
	// Deprecated: the whole chain is verified unless TailOnly.
	VerifyAll bool
	// ExpectHead, when set, is the hash of an entry recorded somewhere
	// else earlier (Log.Head): Open refuses a log that no longer holds it
	// (ErrHeadMissing), which is how a log cut at an entry boundary shows.
	// Ignored with TailOnly. Defaults to none.
	ExpectHead string
	// Logger receives warnings (a repaired tail). Defaults to discarding.
	Logger *slog.Logger
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

// Log is an open audit log that entries are appended to. It is safe for
// concurrent use by the goroutines of one process; only one Log (one
// process) may append to a file at a time.
type Log struct {
	path string
	o    Options

	mu     sync.Mutex
	f      *os.File
	size   int64
	seq    uint64
	head   string
	last   time.Time
	broken error
	// What the file looked like after this Log's last write: its identity
	// (for os.SameFile) and change stamp.
	fi    os.FileInfo
	stamp [2]int64
}

// Open opens the log at path with default Options: see OpenWith.
func Open(path string) (*Log, error) { return OpenWith(path, Options{}) }

// OpenWith opens the log at path for appending, creating it (mode 0600) if
// missing, verifies the whole chain as Verify does (only the last entries
// with Options.TailOnly) and resumes it from the last entry. It refuses a
// file accessible by group or others (ErrInsecure), a chain that does not
// verify (ErrCorrupt, wrapping the *VerifyError), an incomplete last line
// (ErrTornTail, unless Options.RepairTornTail) and a chain without
// Options.ExpectHead (ErrHeadMissing).
//
// While open, the Log checks before and after every append that the file
// at path is still the one it writes, of the size it left it and unchanged
// since (ErrTampered otherwise).
func OpenWith(path string, o Options) (*Log, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	// One writer per log: a second process appending would fork the chain.
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s (%v)", ErrInUse, path, err)
	}
	l := &Log{path: path, o: o, f: f, head: ZeroHash}
	if err := l.load(created); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

func (l *Log) load(created bool) error {
	st, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %v; run chmod 600 %s", ErrInsecure, l.path, st.Mode().Perm(), l.path)
	}
	if created {
		if d, err := os.Open(filepath.Dir(l.path)); err == nil {
			d.Sync() // make the new file's name durable
			d.Close()
		}
	}
	size := st.Size()
	if size == 0 {
		return l.record()
	}
	if !l.o.TailOnly {
		n, _, found, err := verifyChain(io.NewSectionReader(l.f, 0, size), l.o.ExpectHead, nil)
		if err != nil {
			var ve *VerifyError
			if !errors.As(err, &ve) || !strings.HasPrefix(ve.Reason, "last line not terminated") {
				return fmt.Errorf("%w: %s: %w", ErrCorrupt, l.path, err)
			}
			// A torn last line: handled below.
		}
		if l.o.ExpectHead != "" && found == 0 {
			return fmt.Errorf("%w: %s: the %d entries verify but none has the recorded head %s: the log was cut below it or rewritten", ErrHeadMissing, l.path, n, l.o.ExpectHead)
		}
	}
	// Find the last complete line.
	tail, tailStart, err := lastLine(l.f, size)
	if err != nil {
		return err
	}
	if tailStart+int64(len(tail)) < size { // bytes after the last "\n"
		torn := size - (tailStart + int64(len(tail)))
		if !l.o.RepairTornTail {
			return fmt.Errorf("%w: %s: %d bytes after the last complete entry (start with the torn-tail repair, or inspect with `fedstat audit verify`)", ErrTornTail, l.path, torn)
		}
		cut := tailStart + int64(len(tail))
		junk := make([]byte, torn)
		if _, err := l.f.ReadAt(junk, cut); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		save := fmt.Sprintf("%s.torn-%d", l.path, time.Now().UnixNano())
		if err := os.WriteFile(save, junk, 0o600); err != nil {
			return fmt.Errorf("audit: save torn tail: %w", err)
		}
		if err := l.f.Truncate(cut); err != nil {
			return fmt.Errorf("audit: cut torn tail: %w", err)
		}
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		l.o.Logger.Warn("audit: cut an incomplete last entry left by a crash", "path", l.path, "bytes", torn, "saved_to", save)
		size = cut
	}
	if len(tail) == 0 {
		l.size = size
		return l.record()
	}
	e, reason := parseLine(tail[:len(tail)-1])
	if reason != "" {
		return fmt.Errorf("%w: %s: last entry (seq %d): %s", ErrCorrupt, l.path, e.Seq, reason)
	}
	if e.Seq == 1 && e.Prev != ZeroHash {
		return fmt.Errorf("%w: %s: first entry has prev %s", ErrCorrupt, l.path, short(e.Prev))
	}
	if l.o.TailOnly && e.Seq > 1 {
		// The link to the entry before.
		prev, _, err := lastLine(l.f, tailStart)
		if err != nil {
			return err
		}
		p, reason := parseLine(bytes.TrimSuffix(prev, []byte("\n")))
		switch {
		case reason != "":
			return fmt.Errorf("%w: %s: entry before the last (seq %d): %s", ErrCorrupt, l.path, p.Seq, reason)
		case p.Seq+1 != e.Seq || p.Hash != e.Prev:
			return fmt.Errorf("%w: %s: broken chain: last entry (seq %d, prev %s) does not follow seq %d (hash %s)", ErrCorrupt, l.path, e.Seq, short(e.Prev), p.Seq, short(p.Hash))
		}
	}
	l.seq, l.head, l.last, l.size = e.Seq, e.Hash, e.Time, size
	return l.record()
}

// record notes the file as this Log left it.
func (l *Log) record() error {
	fi, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	l.fi = fi
	l.stamp, _ = changeStamp(fi)
	return nil
}

// checkFile makes sure that path still names the file this Log writes and
// that nobody changed it since this Log's last write.
func (l *Log) checkFile() error {
	fi, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	stamp, links := changeStamp(fi)
	tamper := func(what, format string, args ...any) error {
		return &TamperError{Path: l.path, What: what, Detail: fmt.Sprintf(format, args...)}
	}
	pfi, err := os.Stat(l.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return tamper("deleted", "no file at that path any more")
	case err != nil:
		return fmt.Errorf("audit: %w", err)
	case !os.SameFile(fi, pfi):
		return tamper("replaced", "the path now names another file (%d bytes) than the one opened (an editor or sed -i writes a new file and renames it over the log)", pfi.Size())
	case links == 0:
		return tamper("deleted", "the file opened has no name any more")
	case fi.Size() < l.size:
		return tamper("truncated", "it has %d bytes, this process wrote up to %d", fi.Size(), l.size)
	case fi.Size() > l.size:
		return tamper("grown", "%d bytes were added after this process's last entry (seq %d)", fi.Size()-l.size, l.seq)
	case stamp != l.stamp:
		return tamper("edited", "its size is unchanged but it was written to (its change time moved from %s to %s)", stampText(l.stamp), stampText(stamp))
	}
	return nil
}

func stampText(s [2]int64) string {
	return time.Unix(s[0], s[1]).UTC().Format(time.RFC3339Nano)
}

// lastLine returns the last "\n"-terminated line of f (including the "\n")
// and its offset; an empty line if there is none.
func lastLine(f *os.File, size int64) ([]byte, int64, error) {
	const block = 64 << 10
	// end: one past the last "\n".
	end := int64(-1)
	var buf []byte
	for pos := size; pos > 0 && end < 0; {
		n := min(int64(block), pos)
		pos -= n
		chunk := make([]byte, n)
		if _, err := f.ReadAt(chunk, pos); err != nil {
			return nil, 0, fmt.Errorf("audit: %w", err)
		}
		buf = append(chunk, buf...)
		if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
			end = pos + int64(i) + 1
			buf = buf[:i+1]
			// Now find the "\n" before it.
			for {
				if j := bytes.LastIndexByte(buf[:len(buf)-1], '\n'); j >= 0 {
					return bytes.Clone(buf[j+1:]), pos + int64(j) + 1, nil
				}
				if pos == 0 {
					return bytes.Clone(buf), 0, nil
				}
				n := min(int64(block), pos)
				pos -= n
				chunk := make([]byte, n)
				if _, err := f.ReadAt(chunk, pos); err != nil {
					return nil, 0, fmt.Errorf("audit: %w", err)
				}
				buf = append(chunk, buf...)
			}
		}
	}
	return nil, 0, nil // no complete line at all
}

// Append completes e (Seq, Time, Prev, Hash; any values given for them are
// ignored) and writes it durably: it returns only after the entry is synced
// to disk. Time is the log's clock, moved 1 ns past the previous entry when
// the clock has not advanced (or went back), so times strictly increase.
// Appends are serialised; ctx is checked before writing. If a write fails the
// file is cut back to its last good entry; if that fails too, the Log
// refuses further appends (ErrClosed).
func (l *Log) Append(ctx context.Context, e Entry) error {
	_, err := l.AppendEntry(ctx, e)
	return err
}

// AppendEntry is Append returning the completed entry.
func (l *Log) AppendEntry(ctx context.Context, e Entry) (Entry, error) {
	if e.Actor == "" || e.Action == "" {
		return Entry{}, fmt.Errorf("%w: actor and action are required", ErrBadEntry)
	}
	var details []byte
	if len(e.Details) > 0 {
		raw, err := json.Marshal(e.Details)
		if err != nil {
			return Entry{}, fmt.Errorf("%w: details: %w", ErrBadEntry, err)
		}
		if details, err = canonicalDetails(raw); err != nil {
			return Entry{}, fmt.Errorf("%w: details: %w", ErrBadEntry, err)
		}
	} else {
		details = []byte("{}")
	}
	if err := ctx.Err(); err != nil {
		return Entry{}, fmt.Errorf("audit: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.checkLocked(); err != nil {
		return Entry{}, err
	}
	t := l.o.Now().UTC().Round(0)
	if !t.After(l.last) {
		t = l.last.Add(time.Nanosecond)
	}
	e.Seq, e.Time, e.Prev = l.seq+1, t, l.head
	b := body(e.Seq, e.Time, e.Actor, e.Action, e.QueryID, details, e.Prev)
	e.Hash = hashOf(b)
	ln := line(b, e.Hash)
	if _, err := l.f.WriteAt(ln, l.size); err != nil {
		return Entry{}, l.fail(err)
	}
	if err := l.f.Sync(); err != nil {
		return Entry{}, l.fail(err)
	}
	l.size += int64(len(ln))
	l.seq, l.head, l.last = e.Seq, e.Hash, e.Time
	if err := l.record(); err != nil {
		return Entry{}, err
	}
	// Replaced while we wrote: the entry went to a file that is gone.
	if pfi, err := os.Stat(l.path); err != nil || !os.SameFile(l.fi, pfi) {
		l.broken = &TamperError{Path: l.path, What: "replaced", Detail: fmt.Sprintf("the file was replaced while entry seq %d was written to it, so that entry is not in the file at that path", e.Seq)}
		return Entry{}, l.broken
	}
	// Callers get the details as a reader of the file would.
	e.Details = nil
	if !bytes.Equal(details, []byte("{}")) {
		dec := json.NewDecoder(bytes.NewReader(details))
		dec.UseNumber()
		_ = dec.Decode(&e.Details)
	}
	return e, nil
}

// fail cuts the file back after a failed write.
func (l *Log) fail(err error) error {
	if terr := l.f.Truncate(l.size); terr != nil {
		l.broken = err
	} else if serr := l.f.Sync(); serr != nil {
		l.broken = err
	}
	return fmt.Errorf("audit: append to %s: %w", l.path, err)
}

// Head returns the seq and hash of the last entry (0 and ZeroHash for an
// empty log). Record them elsewhere to make truncation detectable.
func (l *Log) Head() (seq uint64, hash string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, l.head
}

// Check returns the error the next Append would fail with for the file
// itself, without appending: ErrClosed, a *TamperError (ErrTampered) when
// the file was replaced, deleted, truncated, grown or edited by someone
// else since this Log's last write (the Log then refuses every further
// append), or the error of an earlier failed write. It costs two stats,
// so a daemon can poll it to report that it can no longer audit.
func (l *Log) Check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.checkLocked()
}

// checkLocked is Check with l.mu held (AppendEntry runs it first).
func (l *Log) checkLocked() error {
	if l.f == nil {
		return ErrClosed
	}
	if l.broken != nil {
		if errors.Is(l.broken, ErrTampered) {
			return l.broken
		}
		return fmt.Errorf("%w: an earlier write failed: %w", ErrClosed, l.broken)
	}
	if err := l.checkFile(); err != nil {
		if errors.Is(err, ErrTampered) {
			l.broken = err
		}
		return err
	}
	return nil
}

// Path returns the file's path.
func (l *Log) Path() string { return l.path }

// Close closes the file. Appends after Close fail with ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
