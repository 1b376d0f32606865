//go:build !linux

package store

func maxRSS() int64 { return 0 }
