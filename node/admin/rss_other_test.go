//go:build !linux

package admin

func maxRSS() int64 { return 0 }
