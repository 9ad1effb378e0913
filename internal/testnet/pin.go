package testnet

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
)

// PinDir names a fresh pin directory on bpffs for one test, so tests never
// touch a real installation's /sys/fs/bpf/hck-bpf. The tracker creates it
// (mounting bpffs if needed); the test's end removes it and its pins.
func PinDir(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	dir := "/sys/fs/bpf/hcktest-" + hex.EncodeToString(b)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
