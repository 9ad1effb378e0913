package destroy

import (
	"errors"
	"testing"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

func connOfSock(s *testnet.Sock, state conn.State) *conn.Conn {
	return &conn.Conn{Cookie: s.Cookie, State: state, Local: s.Local, Remote: s.Remote}
}

// TestDestroyHadNoEffect: where the kernel rules say a destroy may answer
// success and keep the socket (orphans before Linux 6.11), a socket still
// there after its destroy is a failure, "destroy had no effect". This
// kernel does not keep them (bac76cf89816 is in 6.11), so the test treats
// it as older (verify) and makes a socket survive its "successful"
// destroy (keep: the request is answered success, unsent); the real case
// needs Linux < 6.11 and an orphan.
func TestDestroyHadNoEffect(t *testing.T) {
	ns := testnet.New(t)
	var d *Destroyer
	ns.MustDo(func() (err error) { d, err = openDestroyer(t); return err })
	rules, err := kernel.Running()
	if err != nil {
		t.Fatal(err)
	}
	if d.verify != !rules.DestroyOrphans {
		t.Fatalf("kernel %s: verify %v, want %v (orphans destroyed reliably: %v)", rules.Version, d.verify, !rules.DestroyOrphans, rules.DestroyOrphans)
	}

	kept, _ := ns.CloseWait(t, "tcp4")
	dies, _ := ns.CloseWait(t, "tcp6")
	orphan, _ := ns.LastAckOrphan(t, "tcp4")
	d.keep = func(c *conn.Conn) bool { return c.Cookie == kept.Cookie }

	// Without the check (this kernel's rules from 6.11 on), the kept
	// socket reads as destroyed: the silent success the check is for.
	d.verify = false
	if r := d.DestroyOne(connOfSock(kept, conn.CloseWait)); r.Outcome != Destroyed {
		t.Fatalf("unchecked, the kept socket: %v %v, want a (false) success", r.Outcome, r.Err)
	}
	ns.Await(t, kept.In(conn.CloseWait))

	// Treated as an older kernel: every success is checked.
	d.verify = true
	res := d.Destroy([]*conn.Conn{connOfSock(kept, conn.CloseWait), connOfSock(dies, conn.CloseWait), connOfSock(orphan, conn.LastAck)})
	if r := res[0]; r.Outcome != Failed || !errors.Is(r.Err, ErrNoEffect) || r.State != conn.CloseWait {
		t.Errorf("kept socket: %v %v (state %s), want failed: %v", r.Outcome, r.Err, r.State, ErrNoEffect)
	} else {
		t.Logf("kept socket: %v", r.Err)
	}
	for i, name := range []string{"", "CLOSE_WAIT socket", "orphan"} {
		if i > 0 && res[i].Outcome != Destroyed {
			t.Errorf("%s: %v %v, want destroyed (and checked gone)", name, res[i].Outcome, res[i].Err)
		}
	}
	ns.Await(t, kept.In(conn.CloseWait), dies.Gone(), orphan.Gone())
	// As the sweep sees it: a failure, not a success.
	if errs := d.Kill([]*conn.Conn{connOfSock(kept, conn.CloseWait)}); !errors.Is(errs[0], ErrNoEffect) {
		t.Errorf("Kill of the kept socket: %v, want %v", errs[0], ErrNoEffect)
	}
	// A check never touches a dry run's lookups.
	if r := d.Check([]*conn.Conn{connOfSock(kept, conn.CloseWait)}); r[0].Outcome != Confirmed {
		t.Errorf("Check of the kept socket: %v %v, want confirmed", r[0].Outcome, r[0].Err)
	}
}
