// Package evidence keeps and reads what proves a node's past outside its
// budget ledger, so that a ledger that comes back lower than it was (a
// store wiped, replaced, restored from an older copy, or rolled back) is
// refused instead of handing the difference out a second time:
//
//   - the high-water mark file (MarkFile, next to the store, not in it):
//     the ledger's figures after every debit, the audit log's head and the
//     key epoch, signed with the node's certificate key;
//   - the audit log: the sum of its budget.debited entries (and the floors
//     of its budget.carried_forward entries) per analyst and in total, and
//     its number of debits;
//   - the audit log's head recorded in the store (Anchor), which makes a
//     log cut at an entry boundary show;
//   - the epoch record in the store, against the key files under keys/
//     (files of an epoch the store has no record of prove that the store
//     lost it).
//
// Losing the ledger is a privacy failure, not only an availability one.
package evidence

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/node/internal/ledger"
)

// MarkFile is the name of the high-water mark file in a node's data
// directory.
const MarkFile = "ledger.hwm"

// Errors.
var (
	// ErrNoMark: there is no high-water mark file.
	ErrNoMark = errors.New("evidence: no high-water mark file")
	// ErrBadMark: the high-water mark file is damaged, not signed by a
	// node certificate of the network CA, or another node's. It comes as a
	// *MarkError.
	ErrBadMark = errors.New("evidence: high-water mark file damaged or not authentic")
)

// MarkError says what is wrong with a high-water mark file.
type MarkError struct {
	Path, Problem string
}

func (e *MarkError) Error() string { return fmt.Sprintf("evidence: %s: %s", e.Path, e.Problem) }

// Is makes errors.Is(err, ErrBadMark) true.
func (e *MarkError) Is(target error) bool { return target == ErrBadMark }

// Mark is the content of a high-water mark file.
//
// Why a signature with the node's certificate key and not a MAC with the
// operator key: the certificate key is always there (the operator key is
// optional), a signature can be checked by anyone with the network CA's
// certificate (an auditor, another party keeping a copy) without a secret,
// and the embedded certificate keeps an old mark verifiable after the
// node's certificate is renewed. Neither stops the node's own operator,
// who holds both keys, from writing a lower mark: the mark defends
// against accidents (a wiped or replaced store, an old backup copied
// back) and against people who can write files but do not hold the node's
// key; see docs/operations.md.
type Mark struct {
	// Version is 1.
	Version int `json:"version"`
	// Node is the node's id (its certificate's name).
	Node string `json:"node"`
	// Time is when the mark was written.
	Time time.Time `json:"time"`
	// Spend is the ledger's figures when the mark was written.
	Spend ledger.Figures `json:"spend"`
	// Epoch is the node's key epoch then (0: none).
	Epoch uint64 `json:"epoch"`
	// AuditSeq and AuditHead are the audit log's last entry then.
	AuditSeq  uint64 `json:"audit_seq"`
	AuditHead string `json:"audit_head"`
	// Cert is the signer's certificate (DER).
	Cert []byte `json:"cert"`
}

const markDomain = "fedstat ledger.hwm v1\x00"

func markDigest(body []byte) []byte {
	h := sha256.New()
	h.Write([]byte(markDomain))
	h.Write(body)
	return h.Sum(nil)
}

// WriteMark writes m to path, signed with key (m.Cert must be key's
// certificate), atomically and durably: a temporary file, fsync, rename,
// fsync of the directory. The file has mode 0600.
func WriteMark(path string, m Mark, key crypto.Signer) error {
	m.Version = 1
	m.Spend = m.Spend.Clone()
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	sig, err := key.Sign(rand.Reader, markDigest(body), crypto.SHA256)
	if err != nil {
		return fmt.Errorf("evidence: sign the high-water mark: %w", err)
	}
	var b bytes.Buffer
	b.Write(body)
	b.WriteString("\nsig ")
	b.WriteString(base64.StdEncoding.EncodeToString(sig))
	b.WriteByte('\n')
	return writeFileSync(path, b.Bytes())
}

// writeFileSync writes data to path through a synced temporary file and a
// rename, then syncs the directory.
func writeFileSync(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("evidence: %w", err)
	}
	defer os.Remove(tmp.Name()) // os.CreateTemp makes it 0600
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("evidence: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("evidence: sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("evidence: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("evidence: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("evidence: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("evidence: sync %s: %w", dir, err)
	}
	return nil
}

// ReadMark reads the high-water mark file at path and checks its
// signature against the certificate it carries. A missing file is
// ErrNoMark; anything else wrong is a *MarkError (ErrBadMark). Verify
// checks that the certificate is the node's.
func ReadMark(path string) (*Mark, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoMark, path)
	}
	if err != nil {
		return nil, &MarkError{Path: path, Problem: "cannot read: " + err.Error()}
	}
	bad := func(format string, args ...any) error {
		return &MarkError{Path: path, Problem: fmt.Sprintf(format, args...)}
	}
	body, rest, ok := bytes.Cut(b, []byte("\nsig "))
	if !ok || !bytes.HasSuffix(rest, []byte("\n")) {
		return nil, bad("not a high-water mark file, or truncated (%d bytes)", len(b))
	}
	sig, err := base64.StdEncoding.DecodeString(string(bytes.TrimSuffix(rest, []byte("\n"))))
	if err != nil {
		return nil, bad("damaged signature line: %v", err)
	}
	var m Mark
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, bad("damaged: %v", err)
	}
	if m.Version != 1 {
		return nil, bad("version %d, this fedstat reads version 1", m.Version)
	}
	cert, err := x509.ParseCertificate(m.Cert)
	if err != nil {
		return nil, bad("its certificate does not parse: %v", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !ecdsa.VerifyASN1(pub, markDigest(body), sig) {
		return nil, bad("the signature does not verify with the certificate of %s it carries: the file was edited or damaged", cert.Subject.CommonName)
	}
	if m.Spend.Analysts == nil {
		m.Spend.Analysts = map[string]float64{}
	}
	return &m, nil
}

// Verify checks that m was signed by a node certificate of the network CA
// (valid when the mark was written) issued to node. ca may be nil when the
// CA is not at hand: then only the name is checked.
func (m *Mark) Verify(path string, ca *x509.Certificate, node string) error {
	cert, err := x509.ParseCertificate(m.Cert)
	if err != nil {
		return &MarkError{Path: path, Problem: "its certificate does not parse: " + err.Error()}
	}
	if cert.Subject.CommonName != node || m.Node != node {
		return &MarkError{Path: path, Problem: fmt.Sprintf("it is the high-water mark of %s, this node is %s: the data directory was copied from another node, or the node was renamed", m.Node, node)}
	}
	if ca != nil {
		if err := pki.VerifyAt(ca, cert, m.Time); err != nil {
			return &MarkError{Path: path, Problem: fmt.Sprintf("signed by a certificate the network CA does not vouch for at %s: %v", m.Time.UTC().Format(time.RFC3339), err)}
		}
		if r, _ := pki.RoleOf(cert); r != pki.RoleNode {
			return &MarkError{Path: path, Problem: fmt.Sprintf("signed by a certificate with role %s, want node", r)}
		}
	}
	return nil
}
