package doctor

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/destroy"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
)

// TestSockDestroyVerdict: the sock_destroy check names the path this
// kernel destroys by, and what the kfunc fallback cannot do. (TestRun
// checks the netlink path on this machine's kernel.)
func TestSockDestroyVerdict(t *testing.T) {
	modern, err := kernel.RulesFor("6.18.44-fc-v669")
	if err != nil {
		t.Fatal(err)
	}
	refused := fmt.Errorf("destroy tcp TIME_WAIT 127.0.0.1:1 -> 127.0.0.1:2: %w", unix.EOPNOTSUPP)
	for _, tc := range []struct {
		name   string
		p      destroyProbe
		status Status
		want   []string
	}{
		{"netlink", destroyProbe{via: destroy.Netlink}, OK,
			[]string{"CLOSE_WAIT destroyed by cookie, path: netlink SOCK_DESTROY", "TIME_WAIT destroyed by cookie"}},
		{"kfunc", destroyProbe{via: destroy.Kfunc, timeWait: refused}, Warn,
			[]string{"path: the bpf_sock_destroy kfunc fallback", "CONFIG_INET_DIAG_DESTROY",
				"TIME_WAIT and FIN_WAIT2 timewait sockets cannot be destroyed this way"}},
		{"neither", destroyProbe{closeWait: refused, iterErr: errors.New("load destroy iterator: invalid argument")}, Fail,
			[]string{"CONFIG_INET_DIAG_DESTROY", "kfunc fallback (Linux 6.5+) is unavailable: load destroy iterator: invalid argument"}},
	} {
		st, detail := sockDestroyVerdict(tc.p, modern)
		if st != tc.status {
			t.Errorf("%s: %s (%s), want %s", tc.name, st, detail, tc.status)
		}
		for _, w := range tc.want {
			if !strings.Contains(detail, w) {
				t.Errorf("%s: %q, want it to say %q", tc.name, detail, w)
			}
		}
	}
}
