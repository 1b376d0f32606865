package audit

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzVerify: Verify never panics on any input, reports a *VerifyError for
// every bad log, and accepts a log only if every line re-encodes to itself.
func FuzzVerify(f *testing.F) {
	path, data := writeLogF(f, 3)
	_ = path
	f.Add(data)
	f.Add([]byte{})
	f.Add([]byte("\n"))
	f.Add(data[:len(data)/2])
	f.Fuzz(func(t *testing.T, in []byte) {
		n, _, err := VerifyHead(bytes.NewReader(in))
		if err != nil {
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Line < 1 {
				t.Fatalf("error %v is not a VerifyError with a line", err)
			}
			return
		}
		if got := bytes.Count(in, []byte("\n")); got != n {
			t.Fatalf("accepted %d entries in %d lines", n, got)
		}
		i := 0
		err = Scan(bytes.NewReader(in), func(_ int, e Entry) error {
			i++
			if e.Seq != uint64(i) {
				t.Fatalf("scan seq %d at %d", e.Seq, i)
			}
			return nil
		})
		if err != nil || i != n {
			t.Fatalf("scan after verify: %d entries, %v", i, err)
		}
	})
}
