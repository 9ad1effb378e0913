package bpf

import (
	"crypto/sha256"
	"encoding/hex"
)

// OwnersDigest and SocketsDigest name the compiled iterator objects, and
// SockfileDigest the sockfile program: a pinned iterator or program is
// reused only by a binary built from the same object.
var (
	OwnersDigest  = digest(_OwnersBytes)
	SocketsDigest = digest(_SocketsBytes)
	// OwnersCompatDigest names the owners iterator's fallback.
	OwnersCompatDigest = digest(_OwnersCompatBytes)
	SockfileDigest     = digest(_SockfileBytes)
	// SockfileCompatDigest names the sockfile program's fallback.
	SockfileCompatDigest = digest(_SockfileCompatBytes)
)

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}
