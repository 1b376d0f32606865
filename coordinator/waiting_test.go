package coordinator

import (
	"strings"
	"testing"
	"time"

	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// TestWaitingLine: the line `fedstat query` and the dashboard show names
// every node the query waits for with its time, and the time it gives up;
// nothing when it waits for none.
func TestWaitingLine(t *testing.T) {
	since := time.Date(2026, 12, 5, 16, 10, 0, 0, time.UTC)
	st := &coordinatorv1.QueryStatus{}
	if got := WaitingLine(st); got != "" {
		t.Errorf("no node awaited: %q", got)
	}
	st.AwaitingApproval = []*coordinatorv1.ApprovalWait{
		{NodeId: "hospital-b", SinceUnixMs: since.UnixMilli()},
		{NodeId: "hospital-c", SinceUnixMs: since.Add(time.Minute).UnixMilli()},
	}
	st.ApprovalDeadlineUnixMs = since.Add(72 * time.Hour).UnixMilli()
	want := "waiting for approval at hospital-b (since 2026-12-05T16:10:00Z), hospital-c (since 2026-12-05T16:11:00Z); gives up at 2026-12-08T16:10:00Z"
	if got := WaitingLine(st); got != want {
		t.Errorf("waiting line\n got %q\nwant %q", got, want)
	}
}

// TestApprovalSummary: the error of a query that waited names where it was
// denied and where the wait ended, and says nothing of other failures.
func TestApprovalSummary(t *testing.T) {
	got := approvalSummary(map[string]string{
		"hospital-c": "never approved at hospital-c: its admin did not decide within the query's approval wait of 1h0m0s",
		"hospital-b": "denied at hospital-b (node: the node's admin denied the query)",
		"hospital-a": "no answer within the query's deadline of 1m0s",
		"hospital-d": "denied at hospital-d (node: the node's admin denied the query)",
	})
	want := "denied at hospital-b, hospital-d; the approval wait ended before hospital-c approved; "
	if got != want {
		t.Errorf("summary\n got %q\nwant %q", got, want)
	}
	if s := approvalSummary(map[string]string{"hospital-a": "unreachable"}); s != "" {
		t.Errorf("no approvals involved: %q", s)
	}
	if !strings.HasPrefix(interruptedText(&coordinatorv1.QueryStatus{AwaitingApproval: []*coordinatorv1.ApprovalWait{{NodeId: "hospital-b"}}}),
		"the coordinator stopped") || !strings.Contains(interruptedText(&coordinatorv1.QueryStatus{AwaitingApproval: []*coordinatorv1.ApprovalWait{{NodeId: "hospital-b"}}}), "waiting for approval at hospital-b") {
		t.Error("an interrupted waiting query's error does not name the node it waited for")
	}
}
