// Package replay remembers DPoP proofs that have been used, so each one is
// accepted once (RFC 9449 §11.1).
//
// A store's only operation is Claim: an atomic insert-if-absent of a key
// (derived from the proof's key thumbprint and jti) that lives for ttl.
// Memory keeps keys in this process; Redis shares them across replicas.
package replay

import "errors"

// ErrReplayed is returned by Claim when the key was already claimed and has
// not yet expired.
var ErrReplayed = errors.New("replay: proof already used")

// ErrFull is returned by a bounded store that cannot take another key
// without forgetting one that is still live; the caller treats it like an
// unavailable store (fail closed or open, per config).
var ErrFull = errors.New("replay: store full")
