package pairing

import (
	"crypto/rand"
	"encoding/hex"
)

// NewToken returns a fresh pairing token in the form the reference uses:
// a random (version 4) UUID, 36 characters, lowercase hex, hyphenated
// 8-4-4-4-12, no braces. It reads crypto/rand, which does not fail on Linux.
func NewToken() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], u[10:16])
	return string(s[:])
}
