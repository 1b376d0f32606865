// Package linkage implements the cryptography of fedstat's cross-agency
// record linkage: ElGamal over the prime-order group ristretto255 with a
// threshold key, and an exponentiation mix that turns encrypted hashed
// identifiers into per-query pseudonyms. It is the only package that
// imports the edwards25519 arithmetic under ristretto255 (crypto/rangeproof
// uses the group too).
//
// # What it computes
//
// B is the ristretto255 base point, l its prime order; secrets are scalars
// mod l. Wire forms are fixed-size byte arrays (Point, Scalar, Ciphertext,
// ValueCiphertext); everything that decodes them rejects non-canonical
// bytes and names the element at fault.
//
// Key ceremony (Feldman VSS, once per epoch, N members, threshold T):
// member n deals (Deal) a random polynomial f_n of degree T−1, publishes
// A_{n,k} = a_{n,k}·B and sends f_n(j) sealed to member j, who checks it
// (VerifyShare). Member j's share is s_j = Σ_n f_n(j) (CombineShares); the
// public key is X = Σ_n A_{n,0} = s·B with s = Σ_n f_n(0), and Y_j = s_j·B
// (AggregatePublicKey). For a set S of T members, w_j = λ_j(S)·s_j
// (Lagrange at 0, Weighted) and Σ_{j∈S} w_j = s. Nobody ever holds s.
//
// Pseudonyms: a node hashes an identifier to M = H(domain, id)
// (HashIdentifier) and encrypts it, (r·B, M + r·X) (EncryptPoints). The
// stage members of S, in turn, each with a fresh secret k_j per query and
// group, map every (C1, C2) to (k_j·C1, k_j·C2 − w_j·k_j·C1) and shuffle
// (Stage). By induction, after stages 1..i the pair is
// (R·B, K·M + R·(s − w_1 − … − w_i)·B) with K = k_1⋯k_i, so after all T
// stages C2 = K·M (Pseudonym): equal identifiers in the same group give
// equal pseudonyms, across all lists and nodes, and the identity element
// (padding) stays the identity. fedstat's nodes run the first stage with
// w = 0 instead, so that the last stage's output is still encrypted under
// that one share and no stage sees a pseudonym; its holder then gives
// w·C1 from the C1 components alone (PartialDecrypt) and whoever holds the
// lists finishes them (Finish).
//
// Values: exponential ElGamal (v·B + r·X, EncryptValues) rides along each
// pseudonym as a payload, re-randomised and shuffled with it by Stage.
// Payloads add (AddValues); T members' shares w_j·C1 (DecryptShare) strip
// the key (CombineDecryption) to v·B, and a bounded discrete log
// (DiscreteLog) gives v.
//
// # Security
//
// Assumptions: the decisional Diffie–Hellman (DDH) problem is hard in
// ristretto255; HashIdentifier is modelled as a random oracle into the
// group; crypto/rand is a secure random source. A decryption share is
// proven (ProveShares, VerifyShares: a batched Chaum–Pedersen proof that
// every share is w_j·C1 for W_j = λ_j·Y_j, WeightedKey), and so is a
// stage's mix (StageProved, VerifyStage: Terelius–Wikström's proof of a
// shuffle with the stage's map in place of re-encryption, against the
// group's K = k·B and V = k·w·B), so a member that deviates in either is
// caught by whoever checks the proof.
//
// Threshold. Any T of the N members can together decrypt anything under X,
// including an encrypted H(id); since identifiers come from a small space,
// H(id) reveals id by trying every candidate. Confidentiality of identifiers
// and values (IND-CPA of ElGamal under DDH) therefore holds only while at
// most T−1 members collude; T−1 shares reveal nothing about s beyond
// X = s·B (Feldman's commitments publish a_k·B, so this secrecy is
// computational, under discrete log).
//
// Pseudonyms. The final pseudonym K·M with K = Π_j k_j is known to nobody in
// advance: if at least one stage member's k_j is secret and uniform, K is,
// and under DDH the pseudonyms of one (query, group) reveal only equality
// among themselves—they cannot be linked to H(id), to each other across
// groups or queries, or to pseudonyms of any other run. The last stage
// member can strip its own w_T, so it sees the same equality pattern the
// coordinator does (no more).
//
// Unlinkability of positions. Each Stage re-encrypts every element
// (exponentiation by a fresh k, and fresh r for payloads) and applies a
// uniformly random permutation. If at least one stage member is honest (its
// k and permutation stay secret), then under DDH nobody—not the submitting
// nodes, the other stage members, or the coordinator, even together, as
// long as they are fewer than T members—can tell which output came from
// which input better than by guessing, beyond what equal pseudonyms and
// list sizes say. With all T stage members corrupt there is no such
// guarantee (and the threshold is broken anyway).
//
// Input integrity. Anyone who knows X can encrypt H(candidate id). Whoever
// can add ciphertexts to the lists a stage receives (the coordinator
// concatenating them, a stage member passing them on) can therefore plant a
// candidate, many times over, and read from the multiplicity pattern of its
// pseudonym which lists hold that resident. The stage input must be exactly
// the concatenation of the nodes' authenticated submissions and the
// previous stage's authenticated output; checking that is the caller's job.
//
// What this package does not do: authenticate or seal messages
// (crypto/envelope), decide which ciphertexts may be decrypted, or add the
// DP dummies and padding (callers add RandomPoint and identity encryptions).
//
// # Cost
//
// One element through Stage costs three variable-base multiplications'
// worth (k·C1, and k·C2 − kw·C1 as one two-point multiplication) plus
// decoding and encoding two points; a payload adds a base and a
// variable-base multiplication. Batch functions split their work over
// runtime.GOMAXPROCS(0) goroutines.
//
// Concurrency: every function is safe for concurrent use, except that Stage
// modifies its lists in place and must have them to itself.
package linkage
