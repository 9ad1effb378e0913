// Command demo shows hck-bpf's main job in a throwaway network namespace:
// it starts the service with short thresholds, builds sockets stuck in
// CLOSE_WAIT, FIN_WAIT1, FIN_WAIT2 and LAST_ACK next to healthy ESTABLISHED
// and LISTEN ones, and shows the stuck ones destroyed and the healthy ones
// alive, in a process that lives on. Nothing runs in the host's namespace.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/loopsock"
	"github.com/hck-bpf/hck-bpf/internal/netns"
)

func main() {
	bin := flag.String("bin", "bin/hck-bpf", "hck-bpf binary")
	flag.Parse()
	if err := run(*bin); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type sock struct {
	name   string // what it is
	fd     int
	cookie uint64 // SO_COOKIE: how hck-bpf's kill lines name it
	want   string // "destroyed", "alive", or "reset" (its peer was destroyed)
	state  conn.State
}

// killed collects the cookies of the service's "Terminated:" lines: a
// closed socket it names was destroyed, any other closed one was reset by
// its peer's destroy.
type killed struct {
	mu      sync.Mutex
	cookies map[uint64]bool
}

var killLine = regexp.MustCompile(`Terminated: .*\(socket cookie (\d+)\)`)

func (k *killed) saw(line string) {
	m := killLine.FindStringSubmatch(line)
	if m == nil {
		return
	}
	c, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cookies[c] = true
}

func (k *killed) has(cookie uint64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cookies[cookie]
}

func run(bin string) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: sudo make demo")
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	// Everything below runs on a thread in a network namespace of its own;
	// the hck-bpf children inherit it.
	ns, err := netns.New()
	if err != nil {
		return err
	}
	defer ns.Close()
	if err := ns.LoopbackUp(); err != nil {
		return err
	}
	return ns.Do(func() error { return demo(bin) })
}

func demo(bin string) error {
	pinDir := fmt.Sprintf("/sys/fs/bpf/hck-demo-%d", os.Getpid())
	step("1. start the service in a fresh network namespace (pins in %s)", pinDir)
	svc := exec.Command(bin, "run", "--live", "--pin-dir", pinDir,
		"--close-wait-timeout", "2", "--fin-wait-timeout", "3", "--last-ack-timeout", "2")
	// The service says READY=1 on NOTIFY_SOCKET (systemd's protocol) once
	// its tracker is attached and its first sweep ran.
	started, notify, stop, err := readiness()
	if err != nil {
		return err
	}
	defer stop()
	svc.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify)
	out, err := svc.StdoutPipe()
	if err != nil {
		return err
	}
	svc.Stderr = os.Stderr
	if err := svc.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	defer func() {
		_ = exec.Command(bin, "unload", "--pin-dir", pinDir).Run()
	}()
	relayed := make(chan struct{})
	kills := &killed{cookies: map[uint64]bool{}}
	go func() {
		relay(out, kills)
		close(relayed)
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		_ = svc.Process.Kill()
		return errors.New("hck-bpf run did not start in 30s")
	}

	step("2. build sockets: stuck ones (CLOSE_WAIT 2s, FIN_WAIT 3s, LAST_ACK 2s thresholds) and healthy ones")
	socks, err := build()
	if err != nil {
		return err
	}
	show(socks, "before", kills)

	step("3. wait 5s: the service sleeps until each socket's deadline, then destroys it by cookie")
	time.Sleep(5 * time.Second)
	_ = svc.Process.Signal(syscall.SIGTERM)
	<-relayed // every line read, the kill lines included
	_ = svc.Wait()

	bad := show(socks, "after", kills)
	if bad > 0 {
		return fmt.Errorf("%d sockets did not end as expected", bad)
	}
	step("done: every stuck socket destroyed (its peer, if it was connected, reset), every healthy one alive, and this process (pid %d) is still here", os.Getpid())
	return nil
}

func step(format string, a ...any) { fmt.Printf("\n\033[1m== "+format+"\033[0m\n", a...) }

func relay(r io.Reader, kills *killed) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fmt.Println("   hck-bpf | " + sc.Text())
		kills.saw(sc.Text())
	}
}

// readiness listens on a NOTIFY_SOCKET of the demo's own, at path;
// started closes at the service's READY=1; stop removes it.
func readiness() (started <-chan struct{}, path string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "hck-demo-")
	if err != nil {
		return nil, "", nil, err
	}
	path = filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", nil, err
	}
	ch := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := c.ReadFromUnix(buf)
			if err != nil {
				return
			}
			if strings.Contains("\n"+string(buf[:n])+"\n", "\nREADY=1\n") {
				close(ch)
				return
			}
		}
	}()
	return ch, path, func() { c.Close(); os.RemoveAll(dir) }, nil
}

// show prints each socket's state as its owner sees it (TCP_INFO) and,
// after, what became of it: destroyed (a kill line of the service names
// its cookie), reset (closed by its peer's destroy) or alive. It counts
// the ones that did not end as expected.
func show(socks []*sock, when string, kills *killed) int {
	after := when == "after"
	if after {
		fmt.Printf("   %-46s %-12s %-10s %-10s\n", "socket ("+when+")", "state", "expected", "became")
	} else {
		fmt.Printf("   %-46s %-12s %s\n", "socket ("+when+")", "state", "expected")
	}
	bad := 0
	for _, s := range socks {
		state, err := loopsock.State(s.fd)
		st := "?"
		if err == nil {
			s.state = state
			st = state.String()
		}
		if !after {
			fmt.Printf("   %-46s %-12s %s\n", s.name, st, s.want)
			continue
		}
		became := "alive"
		switch {
		case err != nil:
			became = "?"
		case s.state == conn.Close && kills.has(s.cookie):
			became = "destroyed"
		case s.state == conn.Close:
			became = "reset"
		}
		mark := "ok"
		if became != s.want {
			mark = "WRONG"
			bad++
		}
		fmt.Printf("   %-46s %-12s %-10s %-10s %s\n", s.name, st, s.want, became, mark)
	}
	return bad
}

// build makes the sockets. FIN_WAIT1 and LAST_ACK are held without dropping
// packets: the peer never reads, so its receive window fills and our FIN
// stays queued behind unsent data.
func build() ([]*sock, error) {
	// Small buffers make the windows fill fast.
	opts := loopsock.Options{Buf: 4096}
	ln, addr, err := loopsock.Listen(netip.AddrPortFrom(loopsock.Loopback4, 8080), opts)
	if err != nil {
		return nil, err
	}
	var socks []*sock
	add := func(name string, fd int, want string) {
		cookie, _ := loopsock.Cookie(fd)
		socks = append(socks, &sock{name: name, fd: fd, cookie: cookie, want: want})
	}
	add("server LISTEN "+addr.String(), ln, "alive")

	// ESTABLISHED pair.
	c, s, err := loopsock.Pair(ln, opts)
	if err != nil {
		return nil, err
	}
	add("client ESTABLISHED", c, "alive")
	add("server ESTABLISHED", s, "alive")

	// CLOSE_WAIT (server) and FIN_WAIT2 held half-closed (client).
	c, s, err = loopsock.Pair(ln, opts)
	if err != nil {
		return nil, err
	}
	if err := unix.Shutdown(c, unix.SHUT_WR); err != nil {
		return nil, err
	}
	add("server CLOSE_WAIT (app never closes)", s, "destroyed")
	// Destroying the CLOSE_WAIT (2s) sends this end an RST before its own
	// FIN_WAIT2 threshold (3s): it is reset, not destroyed.
	add("client FIN_WAIT2 (half-closed, peer silent)", c, "reset")

	// FIN_WAIT1: fill the server's window, then shut down.
	c, s, err = loopsock.Pair(ln, opts)
	if err != nil {
		return nil, err
	}
	if err := loopsock.Fill(c); err != nil {
		return nil, err
	}
	if err := unix.Shutdown(c, unix.SHUT_WR); err != nil {
		return nil, err
	}
	add("client FIN_WAIT1 (FIN stuck behind data)", c, "destroyed")
	// Its peer's destroy sends it an RST: it closes too, as any peer would.
	add("server ESTABLISHED, peer of the FIN_WAIT1", s, "reset")

	// LAST_ACK: client half-closes (server CLOSE_WAIT), the client never
	// reads, the server fills its window and shuts down.
	c, s, err = loopsock.Pair(ln, opts)
	if err != nil {
		return nil, err
	}
	if err := unix.Shutdown(c, unix.SHUT_WR); err != nil {
		return nil, err
	}
	if err := loopsock.Fill(s); err != nil {
		return nil, err
	}
	if err := unix.Shutdown(s, unix.SHUT_WR); err != nil {
		return nil, err
	}
	add("server LAST_ACK (FIN stuck behind data)", s, "destroyed")
	// Destroying a LAST_ACK sends no RST (tcp_need_reset): this end stays
	// in FIN_WAIT2 until its own threshold.
	add("client FIN_WAIT2 (never reads)", c, "destroyed")
	time.Sleep(200 * time.Millisecond) // let the FINs and ACKs land
	return socks, nil
}
