package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/cmd/fedstat/internal/daemon"
	"github.com/fedstat/fedstat/internal/config"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/releasecheck"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

// verifyReport is `fedstat verify --format json`: one object whatever the
// verdict.
type verifyReport struct {
	QueryID string `json:"query_id"`
	// CheckedQueryID is the query whose release record was checked: the
	// query itself, or the release it was answered from (reused_from).
	CheckedQueryID string `json:"checked_query_id"`
	// Verdict is "verified", "verified_to_key_switch" (the result key was
	// withheld), "not_verified" or "not_checked" (another catalogue).
	Verdict    string   `json:"verdict"`
	Reason     string   `json:"reason,omitempty"`
	Epoch      uint64   `json:"epoch,omitempty"`
	Senders    []string `json:"senders,omitempty"`
	Decryptors []string `json:"decryptors,omitempty"`
	Threshold  int      `json:"threshold,omitempty"`
	PlanBound  bool     `json:"plan_bound"`
	// RangesChecked: the totals are the sum of the values the senders
	// committed to (their signed range commitments).
	RangesChecked bool `json:"ranges_checked"`
	// RangesProven: every sender's range proof in the record verified here
	// against the range commitments it signed: the values it committed to
	// are within the plan's bounds.
	RangesProven bool   `json:"ranges_proven"`
	Withheld     string `json:"withheld,omitempty"`
	// Linked: a query across linked agencies; decryptors are then the mix
	// stages that signed the released result, senders the participants.
	Linked bool `json:"linked,omitempty"`
}

func verifyCommand() *cobra.Command {
	var cf clientFlags
	var networkConfig, format string
	c := &cobra.Command{
		Use:   "verify QUERY_ID",
		Short: "Check that a released result is the decryption of the sum its nodes committed to",
		Long: `Fetch the release record of a released query and check it with nothing but the
network CA certificate (--ca):

  1. every signer's certificate is of the network CA, with role node;
  2. every partial in the sum is its node's signed partial of this query and
     key epoch;
  3. every sender signed a commitment to exactly this set of partials and to
     exactly this sum;
  4. the sum is the sum of the committed partials (the fingerprint check the
     decryptors run), with at least min_nodes senders;
  5. at least T distinct decryptors of the epoch signed key-switch shares of
     this set, this sum and this result key;
  6. the shares, combined with the sum and decrypted with the result key the
     coordinator reveals after the release, decode to the result you were
     given, with the plan every sender committed to (its fingerprint: the
     network catalogue the nodes planned with);
  7. every sender's range proof verifies against the range commitments it
     signed (each value it committed to is within the plan's bounds; needs
     no key), and the decrypted totals are exactly the sum of those values.

It prints the nodes whose partials are in the result and the decryptors, or
names what failed and exits non-zero. A query answered from an earlier
release of the same question (reused_from, charged nothing) has no record of
its own: verify checks that its result and question are that release's, and
then that release's record. When the decrypted totals hold values
you were not given (suppressed small counts, the sums behind a mean, counts
rounded from a finer grid), the coordinator keeps the result key and step 6
is not run: the verdict says so.

A query across linked agencies is checked in its own steps: 1 and 2 (its
participants' signed partials), 3 for the set alone, then that every one of
its T mix stages signed a statement of this set, spec and plan whose result
is the one you were given. A stage signs only what it tallied and decrypted
itself from mixes and shares whose proofs it checked (docs/linkage.md).

The totals are decoded with the default catalogue and the coordinator's
regions, or with the network catalogue of --network-config (a node's or the
coordinator's config file: its regions, max_nodes_per_patient, studies and
value sets). A query on a study table or through a value set, or a network
whose catalogue changes the plan, needs it: without it verify says the
nodes planned with another catalogue, and proves nothing either way.

What a passing check does not prove: that each node's partial is a
well-formed encryption of its true, noised data (docs/crypto.md, "The
release record"). Records are kept for release_record_retention (default
7 days).

--format json prints one object instead: query_id, checked_query_id (the
release it was answered from, for a reused answer), verdict ("verified",
"verified_to_key_switch" when the key was withheld, "not_verified",
"not_checked" when the catalogue differs), reason, epoch, senders,
decryptors, threshold, plan_bound, ranges_proven (step 7's proofs),
ranges_checked (step 7's sum) and withheld; the exit status is the
same. The Python client's Client.verify and the R client's fs_verify run
it. It connects like every analyst command (--coordinator with --cert,
--key and --ca over gRPC, or --http with --token), or with --http, --cert,
--key and --ca and no --coordinator (HTTPS with your certificate, as the
Python and R clients connect).

Example:
  fedstat query "SELECT COUNT(*) FROM patients"   # prints the query id
  fedstat verify q-0123456789abcdef01234567
  fedstat verify --format json q-0123456789abcdef01234567
  fedstat verify --network-config /etc/fedstat/coordinator.toml q-0123456789abcdef01234567`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cf.httpCert = true // verify only reads: HTTPS with the certificate will do
			cl, err := cf.connect()
			if err != nil {
				return err
			}
			defer cl.Close()
			if cf.ca == "" {
				return &usageError{"verify needs the network CA certificate: --ca (or " + envCA + ")"}
			}
			ca, err := pki.LoadCert(cf.ca)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			st, err := cl.Get(ctx, args[0])
			if err != nil {
				return err
			}
			if st.GetResult() == nil {
				return fmt.Errorf("query %s has no released result (%s)", args[0], st.GetState())
			}
			if format != "table" && format != "json" {
				return &usageError{"--format is table or json, not " + format}
			}
			out := cmd.OutOrStdout()
			id := args[0]
			report := verifyReport{QueryID: id, CheckedQueryID: id}
			// say prints a verdict line (table) or the report (json).
			say := func(verdict, reason, line string) {
				report.Verdict, report.Reason = verdict, reason
				if format == "json" {
					b, _ := json.MarshalIndent(report, "", "  ")
					fmt.Fprintln(out, string(b))
					return
				}
				fmt.Fprintln(out, line)
			}
			if from := st.GetReusedFrom(); from != "" {
				// Answered from an earlier release: the same question, the
				// same result, and that release's record.
				orig, err := cl.Get(ctx, from)
				if err != nil {
					return fmt.Errorf("query %s was answered from the release of %s, which cannot be read: %w", id, from, err)
				}
				if why := sameRelease(st, orig); why != "" {
					reason := fmt.Sprintf("it claims the release of %s, but %s", from, why)
					say("not_verified", reason, fmt.Sprintf("NOT VERIFIED: query %s: %s", id, reason))
					return errors.New("the release record does not prove the result")
				}
				if format == "table" {
					fmt.Fprintf(out, "query %s was answered from the release of %s (the same question and result, charged nothing); checking that release\n", id, from)
				}
				id = from
				report.CheckedQueryID = id
			}
			rec, err := cl.ReleaseRecord(ctx, id)
			if err != nil {
				return err
			}
			cat := plan.DefaultCatalogue()
			if networkConfig != "" {
				if cat, err = verifyCatalogue(networkConfig); err != nil {
					return err
				}
			} else if info, err := cl.Catalogue(ctx); err == nil {
				cat.Regions = info.GetRegions()
			}
			v, err := releasecheck.Check(rec, releasecheck.Options{CA: ca, Released: st.GetResult(), Catalogue: cat})
			if errors.Is(err, releasecheck.ErrCatalogue) {
				reason := strings.TrimPrefix(err.Error(), releasecheck.ErrCatalogue.Error()+": ")
				say("not_checked", reason, fmt.Sprintf("NOT CHECKED: query %s: %s", id, reason))
				if networkConfig == "" {
					return &usageError{"verify needs the network catalogue for this query: --network-config FILE (a node's or the coordinator's config)"}
				}
				return errors.New("the release record was not checked")
			}
			if errors.Is(err, releasecheck.ErrRefused) {
				reason := strings.TrimPrefix(err.Error(), releasecheck.ErrRefused.Error()+": ")
				say("not_verified", reason, fmt.Sprintf("NOT VERIFIED: query %s: %s", id, reason))
				return errors.New("the release record does not prove the result")
			}
			if err != nil {
				return err
			}
			if format == "json" {
				report.Epoch, report.Senders, report.Decryptors, report.Threshold = v.Epoch, v.Senders, v.Decryptors, v.Threshold
				report.PlanBound, report.Withheld, report.Linked, report.RangesChecked, report.RangesProven = v.PlanBound, v.Withheld, v.Linked, v.RangesChecked, v.RangesProven
				if v.Decrypted || v.Linked {
					say("verified", "", "")
				} else {
					say("verified_to_key_switch", "", "")
				}
				return nil
			}
			fmt.Fprintf(out, "query %s, key epoch %d\n", v.QueryID, v.Epoch)
			if v.Linked {
				fmt.Fprintf(out, "participants (signed and committed partials): %s\n", strings.Join(v.Senders, ", "))
				fmt.Fprintf(out, "mix stages that signed the release (threshold %d): %s\n", v.Threshold, strings.Join(v.Decryptors, ", "))
				fmt.Fprintln(out, "VERIFIED: the result is what every mix stage tallied and decrypted from proven mixes of these participants' partials")
				return nil
			}
			fmt.Fprintf(out, "partials in the sum (signed and committed): %s\n", strings.Join(v.Senders, ", "))
			fmt.Fprintf(out, "decryptors (signed shares, threshold %d): %s\n", v.Threshold, strings.Join(v.Decryptors, ", "))
			if !v.PlanBound {
				fmt.Fprintln(out, "the nodes did not commit to their plan (nodes older than this check): the totals were decoded with this check's catalogue, unbound")
			}
			if v.Decrypted && !v.RangesChecked {
				fmt.Fprintln(out, "the nodes signed no range commitments (nodes older than the range proofs): the totals were not checked against them")
			}
			if v.RangesChecked && !v.RangesProven {
				fmt.Fprintln(out, "the record carries no range proof of some sender (policy skip_range_proofs, or a record older than them): the values were not proven within the plan's bounds here")
			}
			if v.Decrypted && v.RangesChecked && v.RangesProven {
				fmt.Fprintln(out, "VERIFIED: the result is the decryption of the sum these nodes committed to, and the sum of the values they committed to and proved within the plan's bounds")
			} else if v.Decrypted && v.RangesChecked {
				fmt.Fprintln(out, "VERIFIED: the result is the decryption of the sum these nodes committed to, and the sum of the values they committed to")
			} else if v.Decrypted {
				fmt.Fprintln(out, "VERIFIED: the result is the decryption of the sum these nodes committed to")
			} else {
				if v.RangesProven {
					fmt.Fprintln(out, "every sender's range proof verified here: the values they committed to are within the plan's bounds")
				}
				fmt.Fprintf(out, "VERIFIED up to the key switch: the result key was withheld (%s), so the decryption itself was not checked\n", v.Withheld)
			}
			return nil
		},
	}
	cf.add(c)
	c.Flags().StringVar(&format, "format", "table", "output: table (lines to read) or json (one object: verdict, reason, senders, decryptors, ...)")
	c.Flags().StringVar(&networkConfig, "network-config", "", "a node's or the coordinator's config file: decode with its network catalogue (regions, max_nodes_per_patient, studies, value sets)")
	return c
}

// verifyCatalogue is the network catalogue of a node's or the
// coordinator's config file at path, as the daemons plan with it.
func verifyCatalogue(path string) (*plan.Catalogue, error) {
	var n config.Node
	errNode := config.Load(path, &n, nil)
	if errNode == nil {
		return daemon.NetworkCatalogue(&n.Common)
	}
	var c config.Coordinator
	if err := config.Load(path, &c, nil); err == nil {
		return daemon.NetworkCatalogue(&c.Common)
	}
	return nil, fmt.Errorf("--network-config: %s is neither a node's nor a coordinator's config: %w", path, errNode)
}

// sameRelease says why reused, a query answered from the release of orig,
// is not that release ("" when it is): orig must be released, with the same
// result, for the same SQL, privacy parameters and mechanism.
func sameRelease(reused, orig *coordinatorv1.QueryStatus) string {
	a, b := reused.GetSpec(), orig.GetSpec()
	switch {
	case orig.GetResult() == nil:
		return fmt.Sprintf("%s has no released result (%s)", orig.GetQueryId(), orig.GetState())
	case a.GetSql() != b.GetSql() || a.GetEpsilon() != b.GetEpsilon() || a.GetDelta() != b.GetDelta() || a.GetMechanism() != b.GetMechanism():
		return fmt.Sprintf("%s asked another question (SQL, epsilon, delta or mechanism differ)", orig.GetQueryId())
	case !proto.Equal(reused.GetResult(), orig.GetResult()):
		return fmt.Sprintf("its result is not the result of %s", orig.GetQueryId())
	}
	return ""
}
