package kv

import badger "github.com/dgraph-io/badger/v4"

// Iterator walks the keys with one prefix in key order and can Seek
// forward. It belongs to the transaction that made it and must be closed
// before the transaction ends. Key and Value slices are valid until the
// next call to Next or Seek.
//
// If the store turns out to be damaged while iterating, the iterator
// becomes invalid and Err (and the transaction's View or Update) returns
// the *DamageError.
type Iterator struct {
	it     *badger.Iterator
	d      *DB
	prefix []byte
	err    error
}

// NewIterator returns an iterator over the keys with prefix, positioned at
// the first of them. withValues true prefetches values in the background
// (Badger starts a goroutine per item: good for large values kept in the
// value log); false reads them in Value, which is much cheaper for small
// values stored inline (most of ours).
func (t *Txn) NewIterator(prefix []byte, withValues bool) *Iterator {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.PrefetchValues = withValues
	it := &Iterator{it: t.t.NewIterator(opts), d: t.d, prefix: prefix}
	it.Seek(prefix)
	return it
}

// Seek moves to the first key >= key (within the prefix).
func (i *Iterator) Seek(key []byte) {
	if i.err != nil {
		return
	}
	defer i.d.catch("read", &i.err)
	i.it.Seek(key)
	i.skip()
}

// skip moves past kv's own keys.
func (i *Iterator) skip() {
	for i.it.ValidForPrefix(i.prefix) && hidden(i.prefix, i.it.Item().Key()) {
		i.it.Next()
	}
}

// Valid reports whether the iterator is at a key with the prefix.
func (i *Iterator) Valid() (ok bool) {
	if i.err != nil {
		return false
	}
	defer i.d.catch("read", &i.err)
	return i.it.ValidForPrefix(i.prefix)
}

// Next moves to the next key.
func (i *Iterator) Next() {
	if i.err != nil {
		return
	}
	defer i.d.catch("read", &i.err)
	i.it.Next()
	i.skip()
}

// Key returns the current key.
func (i *Iterator) Key() []byte { return i.it.Item().Key() }

// Value calls fn with the current value, valid only during the call.
func (i *Iterator) Value(fn func(v []byte) error) (err error) {
	if i.err != nil {
		return i.err
	}
	defer i.d.catch("read", &err)
	err = i.d.mapErr(i.it.Item().Value(func(v []byte) error {
		return callUser(func() error { return fn(v) })
	}))
	if err != nil && i.d.damage.Load() != nil {
		i.err = err
	}
	return err
}

// Err returns the damage found while iterating, if any.
func (i *Iterator) Err() error { return i.err }

// Close releases the iterator.
func (i *Iterator) Close() { i.it.Close() }
