package synth

import (
	"runtime"
	"sync"
)

// inOrder computes produce(0) .. produce(n-1) on every core and passes the results
// to emit in index order, from the calling goroutine, at most a few ahead of
// emit (so memory stays bounded by a few results). produce must be safe for
// concurrent use. If emit returns an error, inOrder stops and returns it.
// Both generators run on it: GenerateFunc (patient chunks) and City
// (resident chunks).
func inOrder[T any](n int, produce func(k int) T, emit func(T) error) error {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for k := range n {
			if err := emit(produce(k)); err != nil {
				return err
			}
		}
		return nil
	}
	type job struct {
		k   int
		res chan T
	}
	jobs := make(chan job)
	pending := make(chan job, workers+1) // in index order; bounds results in flight
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // producer
		defer wg.Done()
		defer close(pending)
		defer close(jobs)
		for k := range n {
			j := job{k: k, res: make(chan T, 1)}
			select {
			case pending <- j:
			case <-done:
				return
			}
			select {
			case jobs <- j:
			case <-done:
				return
			}
		}
	}()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				j.res <- produce(j.k)
			}
		}()
	}
	var emitErr error
	for j := range pending {
		r := <-j.res
		if err := emit(r); err != nil {
			emitErr = err
			break
		}
	}
	close(done)
	for range pending { // let the producer finish
	}
	wg.Wait()
	return emitErr
}
