// Package rangeproof proves that the values of a partial lie in the plan's
// bounds, and lets the release check that the decrypted total is the sum of
// exactly those values.
//
// A node commits to each value v_j of its partial with a Pedersen
// commitment V_j = v_j·B + γ_j·B̃ over ristretto255 (B the base point, B̃ a
// second generator hashed to the group, γ_j uniform modulo the group order
// l), and proves with one aggregated Bulletproofs range proof (Bünz et al.,
// "Bulletproofs: Short Proofs for Confidential Transactions and More", IEEE
// S&P 2018, sections 4.2 and 4.3, with the inner-product argument of
// section 3) that every v_j is in its public range [lo_j, hi_j]: both
// v_j − lo_j and hi_j − v_j are in [0, 2^n), so the bound is exact, not
// rounded to a power of two. The proof is bound to a context (the query,
// epoch, sender and spec, as the proofs of encryption are) by the
// Fiat-Shamir transcript.
//
// The commitments ride in the signed partial; the node also encrypts, with
// its values, the limbs of each γ_j (Limbs limbs of LimbBits bits,
// BlindingLimbs) in the slots after them. Adding the ciphertexts adds the
// limbs, so the decrypted total carries, for each slot, the value total
// M_j and the limb sums, from which CheckTotal recovers Γ_j = Σ_i γ_ij mod l
// and checks Σ_i V_ij = M_j·B + Γ_j·B̃. Because the commitments are binding
// (nobody knows log_B B̃), that equation holds only when M_j equals the sum
// of the committed, range-proven values: a member that encrypts anything
// else (a count of minus a million behind a commitment to a count in
// range) makes the check fail, and nothing is released.
//
// # Assumptions
//
// Soundness of the range proof and binding of the commitments: the
// discrete-logarithm problem in ristretto255 (no relation among B, B̃ and
// the generators G_i, H_i, Q, all hashed to the group), SHA-512 as a random
// oracle for Fiat-Shamir. Hiding: perfect (γ_j uniform); the proof is
// honest-verifier zero knowledge, made non-interactive in the random-oracle
// model. Revealing Γ_j, the sum of the members' blindings, opens only the
// sum of the commitments, that is the total, which is released anyway.
package rangeproof
