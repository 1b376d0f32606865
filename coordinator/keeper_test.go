package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 10 * time.Second}
	for _, tc := range []struct {
		n        int
		lo, hi   time.Duration // the range of Delay over u in [0, 1)
		at0, at1 time.Duration
	}{
		{n: 1, lo: 500 * time.Millisecond, hi: time.Second},
		{n: 2, lo: time.Second, hi: 2 * time.Second},
		{n: 4, lo: 4 * time.Second, hi: 8 * time.Second},
		{n: 5, lo: 5 * time.Second, hi: 10 * time.Second}, // capped: min(16s, 10s)
		{n: 200, lo: 5 * time.Second, hi: 10 * time.Second},
	} {
		if got := b.Delay(tc.n, 0); got != tc.lo {
			t.Errorf("Delay(%d, 0) = %v, want %v", tc.n, got, tc.lo)
		}
		if got := b.Delay(tc.n, 0.999999); got < tc.hi-time.Millisecond || got > tc.hi {
			t.Errorf("Delay(%d, 1-) = %v, want just below %v", tc.n, got, tc.hi)
		}
		if got := b.Delay(tc.n, 0.5); got != (tc.lo+tc.hi)/2 {
			t.Errorf("Delay(%d, 0.5) = %v, want %v", tc.n, got, (tc.lo+tc.hi)/2)
		}
	}
}

// fakeCeremonies is a keeper whose ceremonies fail until told otherwise.
type fakeCeremonies struct {
	mu       sync.Mutex
	need     bool
	waiting  string
	failWith error
	attempts []time.Duration // since start
	start    time.Time
	status   ceremonyStatus
}

func (f *fakeCeremonies) keeper(kick chan struct{}) *keeper {
	return &keeper{
		debounce: time.Second, retry: Backoff{Initial: 2 * time.Second, Max: 8 * time.Second},
		jitter: func() float64 { return 0.5 }, now: time.Now, kick: kick, log: slog.New(slog.DiscardHandler),
		assess: func() assessment {
			f.mu.Lock()
			defer f.mu.Unlock()
			return assessment{need: f.need, reason: "no key epoch", waiting: f.waiting}
		},
		attempt: func(ctx context.Context, a assessment) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.attempts = append(f.attempts, time.Since(f.start))
			if f.failWith != nil {
				return f.failWith
			}
			f.need = false
			return nil
		},
		status: func(fn func(*ceremonyStatus)) {
			f.mu.Lock()
			defer f.mu.Unlock()
			fn(&f.status)
		},
	}
}

func (f *fakeCeremonies) snapshot() ([]time.Duration, ceremonyStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.attempts...), f.status
}

// TestKeeperRetriesWithBackoff: a ceremony that keeps failing is retried at
// the backoff's times (fake clock), each failure is visible in the status
// with its error and the next attempt, a change during the backoff does not
// bring the next attempt forward, and the first success ends the retries.
func TestKeeperRetriesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeCeremonies{need: true, failWith: errors.New("node-3: CKG share: envelope: stale or future timestamp"), start: time.Now()}
		kick := make(chan struct{}, 1)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { f.keeper(kick).run(ctx); close(done) }()

		// Debounce 1s, then waits of 0.75 * min(8s, 2s * 2^(n-1)) with the
		// jitter fixed at 0.5: 1.5s, 3s, 6s, 6s.
		want := []time.Duration{1 * time.Second, 2500 * time.Millisecond, 5500 * time.Millisecond, 11500 * time.Millisecond, 17500 * time.Millisecond}
		synctest.Wait()
		if _, st := f.snapshot(); st.State != "scheduled" {
			t.Fatalf("status at start: %+v, want scheduled", st)
		}
		time.Sleep(1200 * time.Millisecond) // t = 1.2s: one failed attempt
		synctest.Wait()
		got, st := f.snapshot()
		if len(got) != 1 || got[0] != want[0] {
			t.Fatalf("attempts by 1.2s: %v, want %v", got, want[:1])
		}
		if st.State != "retrying" || st.Failures != 1 || !strings.Contains(st.LastError, "stale") ||
			st.NextAttempt.Sub(f.start) != want[1] {
			t.Fatalf("status after the first failure: %+v", st)
		}
		if d := st.describe(time.Now()); !strings.Contains(d, "failed 1 times") || !strings.Contains(d, "next attempt in 1.3s") {
			t.Fatalf("readyz text: %q", d)
		}

		// A change during the backoff does not shorten it.
		kick <- struct{}{}
		time.Sleep(time.Second) // t = 2.2s
		synctest.Wait()
		if got, _ := f.snapshot(); len(got) != 1 {
			t.Fatalf("attempts by 2.2s after a kick during the backoff: %v, want 1", got)
		}

		time.Sleep(11 * time.Second) // t = 13.2s: attempts at 2.5, 5.5, 11.5
		synctest.Wait()
		got, st = f.snapshot()
		if fmt.Sprint(got) != fmt.Sprint(want[:4]) || st.Failures != 4 {
			t.Fatalf("attempts by 13.2s: %v (failures %d), want %v", got, st.Failures, want[:4])
		}

		// The clock is fixed: the next retry succeeds, and nothing follows.
		f.mu.Lock()
		f.failWith = nil
		f.mu.Unlock()
		time.Sleep(time.Minute)
		synctest.Wait()
		got, st = f.snapshot()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("attempts: %v, want %v", got, want)
		}
		if st.State != "idle" || st.Failures != 0 {
			t.Fatalf("status after the success: %+v", st)
		}
		cancel()
		<-done
	})
}

// TestKeeperWaitsForNodes: while too few nodes are there, the keeper makes
// no attempt and says what it waits for; a change (kick) makes it look again
// after the debounce time.
func TestKeeperWaitsForNodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeCeremonies{need: true, waiting: "waiting for 3 nodes that can take part in a key epoch (2 now)", start: time.Now()}
		kick := make(chan struct{}, 1)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { f.keeper(kick).run(ctx); close(done) }()
		time.Sleep(time.Hour)
		synctest.Wait()
		got, st := f.snapshot()
		if len(got) != 0 || st.State != "waiting" || !strings.Contains(st.describe(time.Now()), "waiting for 3 nodes") {
			t.Fatalf("attempts %v, status %+v; want none, waiting", got, st)
		}
		f.mu.Lock()
		f.waiting = ""
		f.mu.Unlock()
		kick <- struct{}{}
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		if got, _ := f.snapshot(); len(got) != 0 {
			t.Fatalf("attempt before the debounce time: %v", got)
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if got, st := f.snapshot(); len(got) != 1 || got[0] != time.Hour+time.Second || st.State != "idle" {
			t.Fatalf("attempts %v, status %+v; want one at 1h1s, then idle", got, st)
		}
		cancel()
		<-done
	})
}
