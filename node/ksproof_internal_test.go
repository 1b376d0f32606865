package node

import (
	"fmt"
	"testing"
)

// TestKeptWitnessesEvicted: a node keeps the witnesses of its last
// maxKeptWitnesses releases, wiping and dropping the oldest beyond; a
// release kept again replaces its witnesses.
func TestKeptWitnessesEvicted(t *testing.T) {
	var n Node
	kept := make([]*keptWitness, maxKeptWitnesses+2)
	for i := range kept {
		kept[i] = &keptWitness{epoch: 1, contexts: [][]byte{[]byte("ctx")}}
		n.keepWitness(fmt.Sprintf("q-%d", i), kept[i])
	}
	if len(n.witnesses) != maxKeptWitnesses || len(n.witnessOrder) != maxKeptWitnesses {
		t.Fatalf("%d witnesses kept (%d in order), want %d", len(n.witnesses), len(n.witnessOrder), maxKeptWitnesses)
	}
	for i := range 2 {
		if n.witnesses[fmt.Sprintf("q-%d", i)] != nil || kept[i].contexts != nil {
			t.Fatalf("release %d kept or not wiped after eviction", i)
		}
	}
	last := fmt.Sprintf("q-%d", len(kept)-1)
	if n.witnesses[last] != kept[len(kept)-1] || !kept[len(kept)-1].held {
		t.Fatal("the newest release's witnesses are not kept")
	}
	again := &keptWitness{epoch: 2}
	n.keepWitness(last, again)
	if n.witnesses[last] != again || kept[len(kept)-1].contexts != nil || len(n.witnessOrder) != maxKeptWitnesses {
		t.Fatal("keeping a release again did not replace and wipe its witnesses")
	}
}
