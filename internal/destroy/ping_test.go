package destroy

import (
	"errors"
	"testing"

	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// TestPing: the kernel answers the impossible lookup; a closed Destroyer
// does not ping.
func TestPing(t *testing.T) {
	ns := testnet.New(t)
	ns.MustDo(func() error {
		p, err := NewPool(nil)
		if err != nil {
			return err
		}
		if err := p.Ping(); err != nil {
			t.Errorf("ping: %v", err)
		}
		p.CloseAll()
		if err := p.Ping(); !errors.Is(err, ErrClosed) {
			t.Errorf("ping after close: %v, want ErrClosed", err)
		}
		return nil
	})
}
