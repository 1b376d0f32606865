package protocol_test

import (
	"errors"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/protocol"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestApprovalWaitBounds: the approval wait of a spec is read in seconds,
// refused outside [0, MaxApprovalWait], and widens a partial's window by
// exactly itself.
func TestApprovalWaitBounds(t *testing.T) {
	maxS := int64(protocol.MaxApprovalWait / time.Second)
	for _, tc := range []struct {
		secs int64
		ok   bool
	}{{0, true}, {3600, true}, {maxS, true}, {maxS + 1, false}, {-1, false}} {
		spec := &typesv1.QuerySpec{ApprovalWaitSeconds: tc.secs}
		w, err := protocol.ApprovalWait(spec)
		if tc.ok != (err == nil) {
			t.Errorf("%d s: err %v, want ok=%v", tc.secs, err, tc.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, protocol.ErrSpec) {
				t.Errorf("%d s: %v does not match ErrSpec", tc.secs, err)
			}
			if got := protocol.PartialAge(spec, time.Minute); got != time.Minute {
				t.Errorf("%d s: partial age %s, want the skew alone", tc.secs, got)
			}
			continue
		}
		if w != time.Duration(tc.secs)*time.Second {
			t.Errorf("%d s: wait %s", tc.secs, w)
		}
		if got := protocol.PartialAge(spec, time.Minute); got != time.Minute+w {
			t.Errorf("%d s: partial age %s, want %s", tc.secs, got, time.Minute+w)
		}
	}
}
