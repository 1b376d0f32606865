// Package webhook POSTs notifications (a series alert, a query waiting for
// a node admin's approval) as JSON to a URL an operator configured: three
// tries a few seconds apart, each bounded, so that a slow or absent
// receiver never holds up the work that notifies.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Post sends v as JSON to url: up to three tries, 2 and 4 seconds apart,
// each within 10 seconds; any 2xx answer is success. It returns the last
// error.
func Post(ctx context.Context, url string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return PostJSON(ctx, url, body)
}

// PostJSON is Post with a body already in JSON.
func PostJSON(ctx context.Context, url string, body []byte) error {
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * 2 * time.Second):
			}
		}
		if err = postOnce(ctx, url, body); err == nil {
			return nil
		}
	}
	return err
}

func postOnce(ctx context.Context, url string, body []byte) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}
