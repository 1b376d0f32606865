// Package pki makes and loads the network's certificates: a network CA made
// by fedstat itself (`fedstat ca init`), and certificates for nodes, the
// coordinator and people (`fedstat ca issue`). A certificate names its holder
// (Subject CommonName) and role (Subject OrganizationalUnit). Keys are ECDSA
// P-256; a node's certificate key is also its identity key for signing
// partials and key-switch shares.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"
)

// Role is what a certificate's holder may do.
type Role string

// Roles.
const (
	RoleNode        Role = "node"
	RoleCoordinator Role = "coordinator"
	RoleAnalyst     Role = "analyst"
	RoleResearcher  Role = "researcher"
	RoleNodeAdmin   Role = "node-admin"
	RoleOperator    Role = "operator"
)

// Roles lists every role.
var Roles = []Role{RoleNode, RoleCoordinator, RoleAnalyst, RoleResearcher, RoleNodeAdmin, RoleOperator}

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if slices.Contains(Roles, r) {
		return r, nil
	}
	return "", fmt.Errorf("%w: unknown role %q (want one of node, coordinator, analyst, researcher, node-admin, operator)", ErrBadRequest, s)
}

// Errors.
var (
	ErrBadRequest  = errors.New("pki: bad request")
	ErrNotIssuedBy = errors.New("pki: certificate not issued by the network CA")
	ErrNoRole      = errors.New("pki: certificate carries no fedstat role")
	ErrInsecureKey = errors.New("pki: private key file is readable by group or others")
	// ErrClock: a certificate that is otherwise good is not valid at this
	// machine's time (not yet valid, or expired): usually a clock that is
	// off here or where it was issued. It comes as a *ClockError.
	ErrClock = errors.New("pki: certificate not valid at this machine's time")
)

// ClockError says that a certificate is not valid at this machine's time
// although it would verify at a time inside its validity.
type ClockError struct {
	// Subject is the certificate's holder (its CommonName).
	Subject string
	// CA is true when the certificate is the network CA's own.
	CA bool
	// Now is this machine's time; NotBefore and NotAfter the certificate's
	// validity.
	Now, NotBefore, NotAfter time.Time
}

func (e *ClockError) Error() string {
	who := "certificate of " + e.Subject
	if e.CA {
		who = "the network CA's certificate (" + e.Subject + ")"
	}
	if e.Now.Before(e.NotBefore) {
		return fmt.Sprintf("pki: %s is not valid until %s but this machine's clock says %s: check the clock (NTP) of this machine or of the issuer",
			who, clockText(e.NotBefore), clockText(e.Now))
	}
	return fmt.Sprintf("pki: %s expired at %s and this machine's clock says %s: if that time has not come yet, check the clock (NTP) of this machine; otherwise issue a new certificate (fedstat ca issue)",
		who, clockText(e.NotAfter), clockText(e.Now))
}

// Is makes errors.Is(err, ErrClock) true.
func (e *ClockError) Is(target error) bool { return target == ErrClock }

func clockText(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ClockProblem tells whether the verification error err, for a chain to ca
// checked at time now, is only a matter of time: the certificate that is
// outside its validity at now (the leaf, or ca itself) would verify at the
// nearest time inside the validity of both. It returns the *ClockError, or
// nil when err is something else (a foreign CA, a bad signature, a
// certificate not valid at any time the CA is).
func ClockProblem(err error, ca *x509.Certificate, now time.Time) *ClockError {
	var leaf *x509.Certificate
	if ie, ok := errors.AsType[x509.CertificateInvalidError](err); ok && ie.Reason == x509.Expired {
		leaf = ie.Cert
	} else if ue, ok := errors.AsType[x509.UnknownAuthorityError](err); ok && ca != nil && outside(ca, now) {
		// The CA itself is outside its validity: Go reports that as an
		// unknown authority (with the time error as a hint).
		leaf = ue.Cert
	}
	if leaf == nil || ca == nil {
		return nil
	}
	from, until := leaf.NotBefore, leaf.NotAfter
	if ca.NotBefore.After(from) {
		from = ca.NotBefore
	}
	if ca.NotAfter.Before(until) {
		until = ca.NotAfter
	}
	if from.After(until) {
		return nil
	}
	at := now
	if at.Before(from) {
		at = from
	} else if at.After(until) {
		at = until
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: at}); err != nil {
		return nil // not (only) a matter of time
	}
	off := leaf
	if !outside(leaf, now) {
		off = ca
	}
	return &ClockError{Subject: off.Subject.CommonName, CA: off == ca || off.Equal(ca), Now: now.UTC(), NotBefore: off.NotBefore.UTC(), NotAfter: off.NotAfter.UTC()}
}

func outside(c *x509.Certificate, t time.Time) bool {
	return t.Before(c.NotBefore) || t.After(c.NotAfter)
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// CheckName validates a holder name (node id, user name): 1-63 letters,
// digits, '.', '_' or '-', starting with a letter or digit.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: name %q: want 1-63 letters, digits, '.', '_' or '-'", ErrBadRequest, name)
	}
	return nil
}

// CA is the network certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA makes a self-signed CA for the network called name.
func NewCA(name string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name + " network CA", Organization: []string{"fedstat"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}

// IssueRequest describes a certificate to issue.
type IssueRequest struct {
	// Name is the holder: node id, "coordinator", or a user name. Required.
	Name string
	// Role is the holder's role. Required.
	Role Role
	// Hosts are DNS names and IP addresses the holder serves on (servers
	// only). Defaults to none; "localhost" and 127.0.0.1 are always added for
	// nodes and coordinators so that a loopback network works.
	Hosts []string
	// Validity defaults to one year.
	Validity time.Duration
}

// Identity is a certificate with its private key and the CA that issued it.
type Identity struct {
	Cert  *x509.Certificate
	Chain [][]byte // DER: leaf
	Key   crypto.Signer
	CA    *x509.Certificate
	// Now is the clock TLS verification uses (tls.Config.Time in ServerTLS
	// and ClientTLS). Defaults to time.Now; tests set it to play a machine
	// whose clock is off.
	Now func() time.Time
}

// Clock returns the identity's time now.
func (id *Identity) Clock() time.Time {
	if id.Now != nil {
		return id.Now()
	}
	return time.Now()
}

// Name returns the holder's name.
func (id *Identity) Name() string { return id.Cert.Subject.CommonName }

// Role returns the holder's role.
func (id *Identity) Role() Role { r, _ := RoleOf(id.Cert); return r }

// Issue makes a certificate for r signed by the CA.
func (ca *CA) Issue(r IssueRequest) (*Identity, error) {
	if err := CheckName(r.Name); err != nil {
		return nil, err
	}
	if _, err := ParseRole(string(r.Role)); err != nil {
		return nil, err
	}
	if r.Validity == 0 {
		r.Validity = 365 * 24 * time.Hour
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: r.Name, OrganizationalUnit: []string{string(r.Role)}, Organization: []string{"fedstat"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(r.Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	hosts := r.Hosts
	if r.Role == RoleNode || r.Role == RoleCoordinator {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		hosts = append(slices.Clone(hosts), "localhost", "127.0.0.1", "::1", r.Name)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if h != "" && !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Identity{Cert: cert, Chain: [][]byte{der}, Key: key, CA: ca.Cert}, nil
}

// RoleOf returns the fedstat role a certificate carries.
func RoleOf(c *x509.Certificate) (Role, error) {
	for _, ou := range c.Subject.OrganizationalUnit {
		if r, err := ParseRole(ou); err == nil {
			return r, nil
		}
	}
	return "", ErrNoRole
}

// Verify checks that c was issued by ca and is valid now, for client or
// server use. A certificate that would verify but is not valid at this
// machine's time is a *ClockError (ErrClock), anything else ErrNotIssuedBy.
func Verify(ca *x509.Certificate, c *x509.Certificate) error {
	return VerifyAt(ca, c, time.Now())
}

// VerifyAt is Verify at the time now.
func VerifyAt(ca *x509.Certificate, c *x509.Certificate, now time.Time) error {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	_, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: now})
	if err != nil {
		if ce := ClockProblem(err, ca, now); ce != nil {
			return ce
		}
		return fmt.Errorf("%w: %s: %v", ErrNotIssuedBy, c.Subject.CommonName, err)
	}
	return nil
}

// ServerTLS returns a TLS config that serves id's certificate and requires
// clients with certificates of the same CA (mutual TLS, TLS 1.3).
func (id *Identity) ServerTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(id.CA)
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.tlsCert()},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		Time:         id.Now,
	}
}

// ClientTLS returns a TLS config that presents id's certificate and accepts
// only servers of the same CA. serverName is the name the server's
// certificate must carry (its node id, "coordinator", or a host name).
func (id *Identity) ClientTLS(serverName string) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(id.CA)
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.tlsCert()},
		RootCAs:      pool,
		ServerName:   serverName,
		Time:         id.Now,
	}
}

func (id *Identity) tlsCert() tls.Certificate {
	return tls.Certificate{Certificate: id.Chain, PrivateKey: id.Key, Leaf: id.Cert}
}

// File names inside a PKI directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// CertFile and KeyFile return the file names of a holder's certificate and key.
func CertFile(name string) string { return name + ".crt" }

// KeyFile returns the file name of a holder's private key.
func KeyFile(name string) string { return name + ".key" }

// InitDir makes a new CA and writes ca.crt and ca.key (0600) into dir. It
// refuses to overwrite an existing CA.
func InitDir(dir, network string, validity time.Duration) (*CA, error) {
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		return nil, fmt.Errorf("%w: %s already holds a CA (%s); refusing to overwrite it", ErrBadRequest, dir, CAKeyFile)
	}
	ca, err := NewCA(network, validity)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, CACertFile), "CERTIFICATE", ca.Cert.Raw, 0o644); err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, CAKeyFile), "PRIVATE KEY", keyDER, 0o600); err != nil {
		return nil, err
	}
	return ca, nil
}

// LoadCA reads ca.crt and ca.key from dir.
func LoadCA(dir string) (*CA, error) {
	cert, err := LoadCert(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	key, err := LoadKey(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// WriteIdentity writes NAME.crt and NAME.key (0600) into dir.
func WriteIdentity(dir string, id *Identity) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, CertFile(id.Name())), "CERTIFICATE", id.Cert.Raw, 0o644); err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(id.Key)
	if err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, KeyFile(id.Name())), "PRIVATE KEY", keyDER, 0o600)
}

// LoadIdentity reads a certificate, its key and the CA certificate, and
// checks that the certificate was issued by that CA and carries a role. The
// key file must not be readable by group or others.
func LoadIdentity(certFile, keyFile, caFile string) (*Identity, error) {
	cert, err := LoadCert(certFile)
	if err != nil {
		return nil, err
	}
	key, err := LoadKey(keyFile)
	if err != nil {
		return nil, err
	}
	ca, err := LoadCert(caFile)
	if err != nil {
		return nil, err
	}
	if err := Verify(ca, cert); err != nil {
		return nil, err
	}
	if _, err := RoleOf(cert); err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if cp, ok2 := cert.PublicKey.(*ecdsa.PublicKey); !ok || !ok2 || !pub.Equal(cp) {
		return nil, fmt.Errorf("%w: %s does not hold the key of %s", ErrBadRequest, keyFile, certFile)
	}
	return &Identity{Cert: cert, Chain: [][]byte{cert.Raw}, Key: key, CA: ca}, nil
}

// LoadIdentityDir loads NAME.crt, NAME.key and ca.crt from dir.
func LoadIdentityDir(dir, name string) (*Identity, error) {
	return LoadIdentity(filepath.Join(dir, CertFile(name)), filepath.Join(dir, KeyFile(name)), filepath.Join(dir, CACertFile))
}

// LoadCert reads one PEM certificate.
func LoadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: %s: no PEM CERTIFICATE block", ErrBadRequest, path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadRequest, path, err)
	}
	return c, nil
}

// LoadKey reads a PEM PKCS#8 private key, refusing a file that group or
// others can read.
func LoadKey(path string) (crypto.Signer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v; run chmod 600 %s", ErrInsecureKey, path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: %s: no PEM PRIVATE KEY block", ErrBadRequest, path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadRequest, path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %s: not a signing key", ErrBadRequest, path)
	}
	return s, nil
}

// writePEM writes atomically: a temporary file renamed into place.
func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := pem.Encode(tmp, &pem.Block{Type: typ, Bytes: der}); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
