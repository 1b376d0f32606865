package client_test

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// An analyst runs a query on a network of three nodes (here in-process,
// with fast test-only encryption parameters) and reads its release; a query
// the coordinator cannot parse comes back typed, with its position.
func Example() {
	homomorphic.AllowInsecureForTests()
	ctx := context.Background()
	data, err := demo.Synthetic(3, 100, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	nw, err := demo.Start(ctx, demo.Options{Data: data, Params: homomorphic.InsecureTestSet})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nw.Close()

	c, err := client.Dial(client.Config{Address: nw.Coordinator.Addr(), Identity: nw.Analyst})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	st, err := c.Run(ctx, &typesv1.QuerySpec{Sql: "SELECT COUNT(*) FROM patients", Epsilon: 1}, client.RunOptions{
		Progress: func(st *coordinatorv1.QueryStatus) {
			// Called at every change the analyst may see (a progress bar).
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	r := client.Result(st.GetResult())
	n := r.Rows[0].Values[0]
	fmt.Println("released by", r.Nodes, "nodes")
	fmt.Println("noise variance known:", !math.IsNaN(n.Variance) && n.Variance > 0)

	_, err = c.Run(ctx, &typesv1.QuerySpec{Sql: "SELECT COUNT(*) FROM patient"}, client.RunOptions{})
	var e *client.Error
	if errors.Is(err, client.ErrBadQuery) && errors.As(err, &e) {
		fmt.Printf("bad query at line %d, column %d\n", e.Line, e.Column)
	}
	// Output:
	// released by 3 nodes
	// noise variance known: true
	// bad query at line 1, column 22
}
