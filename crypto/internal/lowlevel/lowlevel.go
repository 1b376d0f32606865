// Package lowlevel holds the capability token that lets the packages under
// crypto/ reach the Lattigo objects wrapped by package homomorphic.
//
// Only packages inside crypto/ can import this package, so only they can
// construct a Token and call the homomorphic methods that take one. This
// keeps raw key material out of reach of the rest of the module while letting
// crypto/collective implement the multiparty protocols.
package lowlevel

// Token is the capability passed to the low-level accessors of package
// homomorphic. Its zero value is the only value.
type Token struct{ _ [0]func() }
