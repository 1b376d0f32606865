package coordinator

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"google.golang.org/grpc/status"

	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// Who checks the proofs of encryption of a full release (docs/crypto.md):
// every decryptor, before it key-switches. The coordinator checks a
// partial's only when a decryptor refuses that partial, to tell a partial
// that fails (its sender is named and nothing is decrypted: every honest
// decryptor would refuse it) from a refusal that does not hold (the
// decryptor's failure: another decryptor set is tried).

// partialJudge checks, at most once each, the proofs of encryption of the
// partials of one release that decryptors refuse.
type partialJudge struct {
	mu      sync.Mutex
	proofs  map[string]func() error // by sender; nil when checked at collection
	checked map[string]error
}

func newPartialJudge(parts []partial) *partialJudge {
	j := &partialJudge{proofs: map[string]func() error{}, checked: map[string]error{}}
	for _, p := range parts {
		j.proofs[p.node] = p.proofs
	}
	return j
}

// check reports whether node sent a partial of this release and, if so,
// the result of checking its proofs of encryption (nil when they verify,
// or were verified as the partial arrived).
func (j *partialJudge) check(node string) (bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	proofs, ok := j.proofs[node]
	if !ok {
		return false, nil
	}
	if err, done := j.checked[node]; done {
		return true, err
	}
	var err error
	if proofs != nil {
		err = proofs()
	}
	j.checked[node] = err
	return true, err
}

// refusedPartials returns the senders of the partials a decryptor's error
// refuses (its PartialRefusal details).
func refusedPartials(err error) []string {
	s, ok := status.FromError(err)
	if !ok {
		return nil
	}
	var from []string
	for _, d := range s.Details() {
		if r, ok := d.(*nodev1.PartialRefusal); ok && !slices.Contains(from, r.GetNodeId()) {
			from = append(from, r.GetNodeId())
		}
	}
	return from
}

// judgeRefusals checks every partial a decryptor of set refused in errs
// (set[i]'s error), through judge. A partial whose proofs fail here too
// ends the release: it returns the error naming its sender (audited as
// release.partial_refused). A refusal of a partial whose proofs verify is
// the decryptor's failure: its entry of errs says so (audited as
// release.refusal_unfounded) and the caller tries another set. A refusal
// that names no partial of this release is left as it is.
func (c *Coordinator) judgeRefusals(ctx context.Context, q *query, set []string, errs []error, judge *partialJudge) error {
	if judge == nil {
		return nil
	}
	var bad []string
	refusers := map[string][]string{}
	reasons := map[string]error{}
	for i, err := range errs {
		if err == nil {
			continue
		}
		for _, from := range refusedPartials(err) {
			known, verr := judge.check(from)
			switch {
			case !known:
			case verr != nil:
				if _, seen := reasons[from]; !seen {
					bad, reasons[from] = append(bad, from), verr
				}
				refusers[from] = append(refusers[from], set[i])
			default:
				c.record(ctx, c.cfg.Identity.Name(), "release.refusal_unfounded", q.id, map[string]any{"node": set[i], "partial": from, "reason": err.Error()})
				errs[i] = fmt.Errorf("it refused %s's partial, whose proofs of encryption the coordinator checked and found good: %w", from, err)
			}
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	why := make([]string, len(bad))
	for k, from := range bad {
		c.record(ctx, c.cfg.Identity.Name(), "release.partial_refused", q.id, map[string]any{"node": from, "decryptors": refusers[from], "reason": reasons[from].Error()})
		q.node(from, "failed", "partial rejected: "+reasons[from].Error(), 0)
		why[k] = fmt.Sprintf("%s: partial rejected: %v (refused by %s, and by the coordinator's own check)", from, reasons[from], strings.Join(refusers[from], ", "))
	}
	return fmt.Errorf("%s sent a partial whose proofs of encryption fail, so the set cannot be released. %s", strings.Join(bad, ", "), strings.Join(why, "; "))
}
