package linkage

import (
	"runtime"
	"sync"
)

// minChunk is the smallest batch worth a goroutine (one element costs tens
// of microseconds).
const minChunk = 16

// parallel splits [0, n) into at most runtime.GOMAXPROCS(0) contiguous chunks
// and runs fn on each, concurrently. It waits for all of them and returns the
// error of the lowest chunk that failed, so that, since fn reports the first
// failure in its own range, the error returned is the one with the lowest
// index whatever the scheduling.
func parallel(n int, fn func(lo, hi int) error) error {
	workers := runtime.GOMAXPROCS(0)
	if c := (n + minChunk - 1) / minChunk; c < workers {
		workers = c
	}
	if workers <= 1 {
		if n == 0 {
			return nil
		}
		return fn(0, n)
	}
	size := (n + workers - 1) / workers
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*size, min((w+1)*size, n)
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = fn(lo, hi)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
