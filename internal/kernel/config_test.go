package kernel

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseHZ(t *testing.T) {
	f := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(f, []byte("# CONFIG_HZ_100 is not set\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, _ := os.Open(f)
	defer r.Close()
	if hz := parseHZ(r); hz != 250 {
		t.Fatalf("parseHZ = %d, want 250", hz)
	}
}
