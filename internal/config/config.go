// Package config reads the configuration of fedstat's daemons: one TOML
// file, then environment variables (FEDSTAT_ plus the key in upper case,
// for the top-level keys), then command-line flags, each overriding the one
// before. Secrets never live in the file itself, only paths to files that
// hold them, so a config dump is safe to show.
package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"
)

// ErrInvalid wraps every configuration error.
var ErrInvalid = errors.New("config: invalid")

// Duration is a time.Duration written as "10s", "1m30s".
type Duration struct{ time.Duration }

// UnmarshalText parses a duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText formats a duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Gossip configures membership gossip.
type Gossip struct {
	// Bind is the gossip address (TCP and UDP). Default "0.0.0.0:7946".
	Bind string `toml:"bind"`
	// Advertise is the address others reach this member at. Default: Bind.
	Advertise string `toml:"advertise"`
	// KeyFile holds the pool's shared key (16, 24 or 32 bytes, raw or hex).
	// Required: gossip is always encrypted.
	KeyFile string `toml:"key_file"`
	// Join lists gossip addresses of existing members.
	Join []string `toml:"join"`
}

// Common holds the keys both daemons have.
type Common struct {
	// Name is the holder name in the certificate (node id or "coordinator").
	Name string `toml:"name"`
	// DataDir holds the daemon's state. Required.
	DataDir string `toml:"data_dir"`
	// PKIDir holds ca.crt, NAME.crt and NAME.key. Required.
	PKIDir string `toml:"pki_dir"`
	// Listen is the gRPC address. Default "127.0.0.1:7443" (coordinator),
	// "127.0.0.1:7444" (node).
	Listen string `toml:"listen"`
	// OpsListen serves /metrics, /healthz and /readyz over plain HTTP.
	// Default "127.0.0.1:9090" (coordinator), "127.0.0.1:9091" (node); "off"
	// disables it.
	OpsListen string `toml:"ops_listen"`
	// OpsPprof also serves Go's runtime profiles (/debug/pprof/: CPU, heap,
	// allocations, goroutines) on the ops endpoint, for `fedstat bench
	// --processes --profile` and for an operator chasing CPU. The daemon
	// refuses to start with it unless ops_listen is a loopback address: a
	// profile shows stack traces and timing, so it stays on the host.
	// Default false.
	OpsPprof bool `toml:"ops_pprof"`
	// Regions is the network catalogue's public list of regions. It must be
	// the same at the coordinator and every node.
	Regions []string `toml:"regions"`
	// MaxNodesPerPatient is how many nodes may hold records of the same
	// patient (a hospital and an insurer, say). Each node bounds a patient's
	// contribution on its own, so every query's sensitivity, and with it
	// its noise, is multiplied by it (plan.Catalogue.MaxNodesPerPatient).
	// Required, at least 1, and the same at the coordinator and every node;
	// 1 only if each patient's records live at exactly one node. The
	// daemons refuse to start without it (RequireMaxNodesPerPatient).
	MaxNodesPerPatient int `toml:"max_nodes_per_patient"`
	// SmallCountThreshold is k: released counts below k display as "< k"
	// (post-processing of the DP release; the noise protects them, the
	// display is a policy). Part of the catalogue: the same at the
	// coordinator and every node. Default 10 when absent; -1 turns it off
	// (a research network that needs small counts).
	SmallCountThreshold int `toml:"small_count_threshold"`
	// Studies lists the schema files (TOML, see docs/statistics.md) of the
	// network's study tables, part of the public catalogue. They must be the
	// same at the coordinator and every node.
	Studies []string `toml:"studies"`
	// ValueSets lists value set files or folders of them (*.json: FHIR
	// ValueSet resources or OMOP concept sets; docs/query-language.md),
	// part of the public catalogue: queries match them as `code IN VALUESET
	// 'name'`. They must be the same at the coordinator and every node (a
	// node that expands a name differently refuses the query).
	ValueSets []string `toml:"value_sets"`
	// Linkage, when present, makes the network a linked one (cross-agency
	// record linkage, docs/linkage.md): patient_id then means the linked
	// resident. Part of the public catalogue: the same at the coordinator
	// and every node (plan.Catalogue.Linkage). Default: absent, no linkage.
	Linkage *Linkage `toml:"linkage"`
	// Params is the homomorphic parameter set. Default: the production set.
	Params string `toml:"params"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `toml:"log_level"`
	// LogFormat is text or json. Default text.
	LogFormat string `toml:"log_format"`
	// AuditLog is the path of the hash-chained audit log. Default
	// DATA_DIR/audit.log.
	AuditLog string  `toml:"audit_log"`
	Gossip   *Gossip `toml:"gossip"`
	// Source is the file the configuration was read from (set by Load; empty
	// when none), for messages. It is not a key of the file.
	Source string `toml:"-"`
}

// Linkage is the network catalogue's [linkage] table.
type Linkage struct {
	// IdentifierSystem is the FHIR Patient.identifier system of the
	// residents' shared identifier (a resident identity number, e.g.
	// "urn:oid:2.16.156.10011.1.1"); an agency table's schema id column
	// holds values of the same identifier. Required when [linkage] is
	// present: non-empty, without white space.
	IdentifierSystem string `toml:"identifier_system"`
}

// IdentifierSystem returns the network's identifier system, or "" when the
// network does not link records (no [linkage] table).
func (c *Common) IdentifierSystem() string {
	if c.Linkage == nil {
		return ""
	}
	return c.Linkage.IdentifierSystem
}

// validate checks the keys of the common section that Load can check on
// its own.
func (c *Common) validate() error {
	if c.Linkage != nil {
		sys := c.Linkage.IdentifierSystem
		switch {
		case sys == "":
			return fmt.Errorf("%w: %s: [linkage] identifier_system is required when [linkage] is present: the FHIR "+
				"Patient.identifier system of the residents' shared identifier (e.g. \"urn:oid:...\"); remove [linkage] "+
				"for a network that does not link records", ErrInvalid, c.where())
		case strings.IndexFunc(sys, unicode.IsSpace) >= 0:
			return fmt.Errorf("%w: %s: [linkage] identifier_system %q contains white space: want a system URI", ErrInvalid, c.where(), sys)
		}
	}
	return nil
}

func (c *Common) setSource(path string) { c.Source = path }

// where names the configuration's origin in messages.
func (c *Common) where() string {
	if c.Source == "" {
		return "the configuration (no file; flags and FEDSTAT_* variables)"
	}
	return c.Source
}

// RequireMaxNodesPerPatient checks max_nodes_per_patient, which has no
// default: a wrong value silently under-noises every query (a patient at K
// nodes has K times the sensitivity that K = 1 charges for, and K² the
// zCDP cost). The error names the key, the file and the reason.
func (c *Common) RequireMaxNodesPerPatient() error {
	switch {
	case c.MaxNodesPerPatient == 0:
		return fmt.Errorf("%w: %s: max_nodes_per_patient is required and has no default: it is how many nodes "+
			"may hold records of the same patient (each patient's records may be at several nodes, e.g. a hospital "+
			"and an insurer), and every query's noise is scaled by it; give the same value to the coordinator and "+
			"every node, and set 1 only if each patient's records live at exactly one node", ErrInvalid, c.where())
	case c.MaxNodesPerPatient < 0:
		return fmt.Errorf("%w: %s: max_nodes_per_patient is %d: want at least 1 (how many nodes may hold records of the same patient)",
			ErrInvalid, c.where(), c.MaxNodesPerPatient)
	}
	return nil
}

// Coordinator is the coordinator's configuration.
type Coordinator struct {
	Common
	// HTTPListen serves the HTTP/JSON API over TLS. Default
	// "127.0.0.1:8443"; "off" disables it.
	HTTPListen string `toml:"http_listen"`
	// TokensFile lists bearer tokens (hashed) for analysts without a
	// certificate. Default none.
	TokensFile string `toml:"tokens_file"`
	// Threshold is T of the key epochs. Default: the whole decryption
	// committee.
	Threshold int `toml:"threshold"`
	// Committee is K, how many members hold the key of an epoch (the
	// decryption committee); the others only encrypt under its public key,
	// so a key ceremony costs O(K^2) and a release T key-switch shares
	// whatever the number of nodes. Default 0: every member.
	Committee int `toml:"committee"`
	// CommitteeMembers are nodes the operator wants on the committee, most
	// wanted first; the other seats keep the previous committee and then
	// follow a public rule (operations.md, "Decryption committee").
	CommitteeMembers []string `toml:"committee_members"`
	// CommitteeReplaceAfter is how long a committee member may be
	// unreachable before a new key epoch gives its seat to another member.
	// Default 10m.
	CommitteeReplaceAfter Duration `toml:"committee_replace_after"`
	// MinNodes is the default number of partials a release needs.
	// Default: the threshold.
	MinNodes int `toml:"min_nodes"`
	// CompactRelease sends decryptors the sum of the partials without the
	// partials themselves: less traffic, but no decryptor can verify the
	// partials' proofs of encryption, so every node must set policy
	// accept_unproven_partials. Default false.
	CompactRelease bool `toml:"compact_release"`
	// SkipRangeProofs releases sums of partials without range proofs
	// (nodes with policy skip_range_proofs), checked against their
	// commitments all the same. Default false.
	SkipRangeProofs bool `toml:"skip_range_proofs"`
	// MinMembers is how many nodes must be there before the first key
	// epoch. Default 2.
	MinMembers int `toml:"min_members"`
	// EpochDebounce is how long membership must be stable before a new key
	// epoch. Default 10s.
	EpochDebounce Duration `toml:"epoch_debounce"`
	// CeremonyRetryMin and CeremonyRetryMax bound the wait between failed
	// key ceremonies (capped exponential backoff with jitter). Defaults:
	// epoch_debounce and 5m.
	CeremonyRetryMin Duration `toml:"ceremony_retry_min"`
	CeremonyRetryMax Duration `toml:"ceremony_retry_max"`
	// HealthInterval is how often the coordinator asks every node whether
	// it can do its part in the key epoch. Default 10s.
	HealthInterval Duration `toml:"health_interval"`
	// RekeyOnLostMember is what a new key epoch does about a member that
	// lost its keys or its state: "rejoin" (re-key with it, fresh) or
	// "exclude" (re-key without it, until it presents a new certificate).
	// Default "rejoin".
	RekeyOnLostMember string `toml:"rekey_on_lost_member"`
	// Deadline bounds a query's wait for partials. Default 60s.
	Deadline Duration `toml:"deadline"`
	// ApprovalWait is how long a query waits for the admins of nodes that
	// require approval when the analyst does not say (fedstat query
	// --approval-wait). Default 24h.
	ApprovalWait Duration `toml:"approval_wait"`
	// MaxApprovalWait is the longest approval wait an analyst may ask for.
	// Default 7 days (168h); at most 30 days (720h).
	MaxApprovalWait Duration `toml:"max_approval_wait"`
	// ReleaseRecordRetention is how long the coordinator keeps the release
	// record of a released query (`fedstat verify`). Defaults to 168h.
	ReleaseRecordRetention Duration `toml:"release_record_retention"`
	// ApprovalPoll is how often a waiting query asks such a node again.
	// Default 5s.
	ApprovalPoll Duration `toml:"approval_poll"`
	// Nodes lists nodes statically ("id=host:port"), for networks without
	// gossip. Default none.
	Nodes []string `toml:"nodes"`
	// PopulationsFile is a CSV of the public population of each region
	// (columns region or abbreviation, and population, as FluSight's
	// locations.csv): part of the catalogue served to analysts, the
	// denominators of `fedstat stats incidence`. Default none.
	PopulationsFile string `toml:"populations_file"`
	// SeriesInterval is how often the coordinator looks for due periods of
	// standing series, and retries one that could not run. Default 1m.
	SeriesInterval Duration `toml:"series_interval"`
	// SeriesDelay is how long after a period's last day it becomes due
	// (time for late records to reach the nodes). Default 0: the next day.
	SeriesDelay Duration `toml:"series_delay"`
	// AlertWebhook is a URL that receives every alert of a standing series
	// as a JSON POST. Default none.
	AlertWebhook string `toml:"alert_webhook"`
}

// Policy is a node admin's policy.
type Policy struct {
	// Roles that may query the node. Default analyst, researcher, operator.
	Roles []string `toml:"roles"`
	// Kinds of query allowed (empty: all).
	Kinds []string `toml:"kinds"`
	// MinNodes is the smallest min_nodes the node accepts. Default 2.
	MinNodes int `toml:"min_nodes"`
	// MinCohort refuses count queries whose local cohort is below it,
	// decided on a noisy count that is charged with the query. Default 0
	// (off).
	MinCohort int `toml:"min_cohort"`
	// MinCohortRho is the zCDP cost of that check, added to every query
	// with a count while min_cohort is on. Default 0.005.
	MinCohortRho float64 `toml:"min_cohort_rho"`
	// RequireApproval queues every query for the admin's approval.
	RequireApproval bool `toml:"require_approval"`
	// ApprovalWebhook is a URL told of every query that starts to wait for
	// approval (JSON POST). Default none.
	ApprovalWebhook string `toml:"approval_webhook"`
	// RequireAnalystSignature refuses queries that no analyst's client
	// signed (see node.Policy.RequireAnalystSignature). Default false.
	RequireAnalystSignature bool `toml:"require_analyst_signature"`
	// AcceptUnprovenPartials lets the node key-switch sums of partials
	// without proofs of encryption (older nodes, compact releases; see
	// node.Policy.AcceptUnprovenPartials). Default false.
	AcceptUnprovenPartials bool `toml:"accept_unproven_partials"`
	// SkipRangeProofs sends partials without range proofs and key-switches
	// sums of partials without them (see node.Policy.SkipRangeProofs; every
	// node and the coordinator of the network set it together). Default
	// false.
	SkipRangeProofs bool `toml:"skip_range_proofs"`
}

// Budget is a node's privacy budget, in zCDP rho.
type Budget struct {
	TotalRho      float64            `toml:"total_rho"`
	PerAnalystRho float64            `toml:"per_analyst_rho"`
	Analysts      map[string]float64 `toml:"analysts"`
}

// Node is a node's configuration.
type Node struct {
	Common
	// Advertise is the gRPC address the coordinator reaches this node at.
	// Default: Listen.
	Advertise string `toml:"advertise"`
	// KeyFile is the operator key file that encrypts data and secret shares
	// at rest. Default none.
	KeyFile string `toml:"key_file"`
	Policy  Policy `toml:"policy"`
	Budget  Budget `toml:"budget"`
	// Warehouse, when its dsn is set, makes the node answer queries from an
	// OMOP CDM database instead of its imported records.
	Warehouse Warehouse `toml:"warehouse"`
	// Network says how the coordinator reaches the node.
	Network Network `toml:"network"`
}

// Node network modes ([network] mode).
const (
	// ModeDialled: the node serves gRPC on listen and the coordinator
	// dials it (at advertise, found by gossip or listed in its nodes).
	ModeDialled = "dialled"
	// ModeOutbound: the node listens on no network port but its local
	// ops endpoint; it dials the coordinator and keeps one tunnel open,
	// through which the coordinator calls it.
	ModeOutbound = "outbound"
)

// Network is a node's [network] table.
type Network struct {
	// Mode is "dialled" (default) or "outbound" (see ModeDialled and
	// ModeOutbound; docs/operations.md, "Network modes and firewall
	// rules").
	Mode string `toml:"mode"`
	// Coordinator is the coordinator's gRPC address, host:port (its
	// listen). Required in outbound mode, refused in dialled mode.
	Coordinator string `toml:"coordinator"`
	// CoordinatorName is the name the coordinator's certificate carries
	// (outbound mode). Default "coordinator".
	CoordinatorName string `toml:"coordinator_name"`
}

// Outbound reports whether the node runs in outbound mode.
func (c *Node) Outbound() bool { return c.Network.Mode == ModeOutbound }

// CheckNetwork checks the [network] table against the keys it excludes,
// after flags and variables are applied: an outbound node has no listen,
// no advertise and no [gossip], and its ops endpoint is on loopback (or
// off), so that nothing it opens is reachable from another machine.
func (c *Node) CheckNetwork() error {
	nw := c.Network
	switch nw.Mode {
	case "", ModeDialled:
		if nw.Coordinator != "" || nw.CoordinatorName != "" {
			return fmt.Errorf("%w: %s: [network] coordinator and coordinator_name are for mode = %q; in dialled mode the coordinator dials the node "+
				"(set mode = %q, or remove them)", ErrInvalid, c.where(), ModeOutbound, ModeOutbound)
		}
		return nil
	case ModeOutbound:
	default:
		return fmt.Errorf("%w: %s: [network] mode %q: want %q (the coordinator dials the node) or %q (the node dials the coordinator)",
			ErrInvalid, c.where(), nw.Mode, ModeDialled, ModeOutbound)
	}
	why := "an outbound node opens no listener and joins no gossip: the coordinator reaches it through the tunnel the node opens"
	switch {
	case nw.Coordinator == "":
		return fmt.Errorf("%w: %s: [network] coordinator is required with mode = %q: the coordinator's gRPC address, host:port", ErrInvalid, c.where(), ModeOutbound)
	case !hasPort(nw.Coordinator):
		return fmt.Errorf("%w: %s: [network] coordinator %q: want host:port (the coordinator's listen)", ErrInvalid, c.where(), nw.Coordinator)
	case c.Listen != "":
		return fmt.Errorf("%w: %s: listen is %q but [network] mode is %q; remove listen (%s)", ErrInvalid, c.where(), c.Listen, ModeOutbound, why)
	case c.Advertise != "":
		return fmt.Errorf("%w: %s: advertise is %q but [network] mode is %q; remove advertise (%s)", ErrInvalid, c.where(), c.Advertise, ModeOutbound, why)
	case c.Gossip != nil:
		return fmt.Errorf("%w: %s: [gossip] is present but [network] mode is %q; remove [gossip] (%s)", ErrInvalid, c.where(), ModeOutbound, why)
	case c.OpsListen != "" && c.OpsListen != "off" && !loopback(c.OpsListen):
		return fmt.Errorf("%w: %s: ops_listen %q is not a loopback address but [network] mode is %q, which opens nothing reachable "+
			"from another machine: use 127.0.0.1:PORT or [::1]:PORT (scrape it through a local agent) or \"off\"", ErrInvalid, c.where(), c.OpsListen, ModeOutbound)
	}
	return nil
}

func hasPort(addr string) bool {
	h, p, err := net.SplitHostPort(addr)
	return err == nil && h != "" && p != ""
}

// loopback reports whether addr (host:port) can only be reached from this
// machine.
func loopback(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Warehouse is a node's OMOP CDM v5.4 database back end.
type Warehouse struct {
	// DSN is a PostgreSQL connection string (libpq key=value or URL). Keep
	// the password out of it: libpq's PGPASSFILE or PGPASSWORD apply.
	DSN string `toml:"dsn"`
	// Dialect is the SQL dialect: "postgres" (default; also Citus), "clickhouse" (a Distributed table over shards by person_id; docs/warehouse.md) or "duckdb" (a binary built with -tags duckdb).
	Dialect string `toml:"dialect"`
	// Schema holds the OMOP tables. Default "omop".
	Schema string `toml:"schema"`
}

// Load reads path (if not empty) into cfg, then applies FEDSTAT_* variables
// from env (os.Environ() when nil) to the top-level string, number and
// boolean keys. A Coordinator or Node remembers path as its Common.Source.
func Load(path string, cfg any, env []string) error {
	if s, ok := cfg.(interface{ setSource(string) }); ok {
		s.setSource(path)
	}
	if path != "" {
		md, err := toml.DecodeFile(path, cfg)
		if err != nil {
			var pe toml.ParseError
			if errors.As(err, &pe) {
				return fmt.Errorf("%w: %s:%d: %s", ErrInvalid, path, pe.Position.Line, pe.Message)
			}
			return fmt.Errorf("%w: %s: %v", ErrInvalid, path, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			keys := make([]string, len(und))
			for i, k := range und {
				keys[i] = k.String()
			}
			return fmt.Errorf("%w: %s: unknown keys %s", ErrInvalid, path, strings.Join(keys, ", "))
		}
	}
	if env == nil {
		env = os.Environ()
	}
	if err := applyEnv(cfg, env); err != nil {
		return err
	}
	if v, ok := cfg.(interface{ validate() error }); ok {
		return v.validate()
	}
	return nil
}

// applyEnv sets fields tagged toml:"key" from FEDSTAT_KEY.
func applyEnv(cfg any, env []string) error {
	vars := map[string]string{}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, "FEDSTAT_") {
			vars[k] = v
		}
	}
	return walk(reflect.ValueOf(cfg).Elem(), vars)
}

func walk(v reflect.Value, vars map[string]string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f, fv := t.Field(i), v.Field(i)
		if f.Anonymous {
			if err := walk(fv, vars); err != nil {
				return err
			}
			continue
		}
		tag := strings.Split(f.Tag.Get("toml"), ",")[0]
		if tag == "" {
			continue
		}
		name := "FEDSTAT_" + strings.ToUpper(tag)
		val, ok := vars[name]
		if !ok {
			continue
		}
		switch fv.Kind() {
		case reflect.String:
			fv.SetString(val)
		case reflect.Int:
			n, err := strconv.Atoi(val)
			if err != nil {
				return fmt.Errorf("%w: %s=%q: want a whole number", ErrInvalid, name, val)
			}
			fv.SetInt(int64(n))
		case reflect.Bool:
			b, err := strconv.ParseBool(val)
			if err != nil {
				return fmt.Errorf("%w: %s=%q: want true or false", ErrInvalid, name, val)
			}
			fv.SetBool(b)
		case reflect.Slice:
			if fv.Type().Elem().Kind() == reflect.String {
				parts := strings.Split(val, ",")
				for i := range parts {
					parts[i] = strings.TrimSpace(parts[i])
				}
				fv.Set(reflect.ValueOf(parts))
			}
		case reflect.Struct:
			if d, ok := fv.Addr().Interface().(*Duration); ok {
				if err := d.UnmarshalText([]byte(val)); err != nil {
					return fmt.Errorf("%w: %s=%q: %v", ErrInvalid, name, val, err)
				}
			}
		}
	}
	return nil
}

// ReadSecretFile reads a key file of 16, 24 or 32 bytes, raw or hex, that
// group and others cannot read.
func ReadSecretFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v; run chmod 600 %s", ErrInvalid, path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	switch len(b) {
	case 16, 24, 32:
		return b, nil
	}
	t := strings.TrimSpace(string(b))
	if k, err := hex.DecodeString(t); err == nil && (len(k) == 16 || len(k) == 24 || len(k) == 32) {
		return k, nil
	}
	return nil, fmt.Errorf("%w: %s must hold 16, 24 or 32 bytes, raw or in hex", ErrInvalid, path)
}

// Dump returns the configuration as TOML (it holds paths to secrets, never
// secrets).
func Dump(cfg any) (string, error) {
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(cfg); err != nil {
		return "", err
	}
	return b.String(), nil
}
