package kv

import badger "github.com/dgraph-io/badger/v4"

// Iterator walks the keys with one prefix in key order and can Seek
// forward. It belongs to the transaction that made it and must be closed
// before the transaction ends. Key and Value slices are valid until the
// next call to Next or Seek.
type Iterator struct {
	it     *badger.Iterator
	prefix []byte
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
	it := &Iterator{it: t.t.NewIterator(opts), prefix: prefix}
	it.it.Seek(prefix)
	return it
}

// Seek moves to the first key >= key (within the prefix).
func (i *Iterator) Seek(key []byte) { i.it.Seek(key) }

// Valid reports whether the iterator is at a key with the prefix.
func (i *Iterator) Valid() bool { return i.it.ValidForPrefix(i.prefix) }

// Next moves to the next key.
func (i *Iterator) Next() { i.it.Next() }

// Key returns the current key.
func (i *Iterator) Key() []byte { return i.it.Item().Key() }

// Value calls fn with the current value, valid only during the call.
func (i *Iterator) Value(fn func(v []byte) error) error {
	return mapErr(i.it.Item().Value(fn))
}

// Close releases the iterator.
func (i *Iterator) Close() { i.it.Close() }
