package protocol

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// SpecDigest identifies a query spec: SHA-256 over its deterministic
// protobuf encoding. A node puts it into every partial it signs, so that the
// partial can only be released under the spec (min_nodes, threshold,
// epsilon) its noise was calibrated for.
func SpecDigest(spec *typesv1.QuerySpec) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(spec)
	if err != nil {
		// A QuerySpec has only scalar fields; marshalling cannot fail.
		panic("protocol: marshal query spec: " + err.Error())
	}
	h := sha256.New()
	h.Write([]byte("fedstat/spec/v1\x00"))
	h.Write(b)
	return h.Sum(nil)
}

// CommitDigest identifies the partial set of a release: query id, epoch,
// spec and every partial (node id, signed header and signature), in node
// order. Nodes commit to one such digest per query id; the target key and
// the decryptors are left out so that a release can be retried with other
// decryptors over the same partials.
func CommitDigest(queryID string, epoch uint64, spec *typesv1.QuerySpec, partials []*nodev1.NodeSigned) []byte {
	h := sha256.New()
	field := func(b []byte) {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		h.Write(b)
	}
	field([]byte("fedstat/release-commit/v1"))
	field([]byte(queryID))
	field(binary.BigEndian.AppendUint64(nil, epoch))
	field(SpecDigest(spec))
	ps := slices.Clone(partials)
	slices.SortFunc(ps, func(a, b *nodev1.NodeSigned) int { return strings.Compare(a.GetNodeId(), b.GetNodeId()) })
	for _, p := range ps {
		field([]byte(p.GetNodeId()))
		field(p.GetSigned().GetHeader())
		field(p.GetSigned().GetSignature())
	}
	return h.Sum(nil)
}
