package bpf

import (
	"crypto/sha256"
	"encoding/hex"
)

// OwnersDigest and SocketsDigest name the compiled iterator objects: a
// pinned iterator is reused only by a binary built from the same object.
var (
	OwnersDigest  = digest(_OwnersBytes)
	SocketsDigest = digest(_SocketsBytes)
)

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}
