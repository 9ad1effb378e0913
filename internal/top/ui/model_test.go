package ui

import (
	"slices"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/top"
)

func cookies(rows []top.Candidate) []uint64 {
	var out []uint64
	for _, r := range rows {
		out = append(out, r.Conn.Cookie)
	}
	return out
}

// TestSortEveryColumn: each column in both orders, the fixture's cookies
// in the order expected (ties by cookie ascending in both orders).
func TestSortEveryColumn(t *testing.T) {
	cands := fixture().Candidates
	// 11 CW 10.0.0.5:8080 ->10.0.0.100:52431 nginx[812] web 75s left -15s
	// 12 CW 10.0.0.5:8080 ->10.0.0.100:52432 nginx[812] web 42s left 18s
	// 13 FW2 [fd00::5]:443 ->[fd00::42]:60001 java[4242] (inode) 30s left 90s
	// 14 LA 10.0.0.5:22 ->10.0.0.7:40000 - web 90s excluded
	// 15 TW 10.0.0.5:5432 ->10.0.0.8:33000 - db 119.5s left 0.5s
	for _, tc := range []struct {
		col       Column
		asc, desc []uint64
	}{
		{ColState, []uint64{11, 12, 13, 14, 15}, []uint64{15, 14, 13, 11, 12}},
		{ColLocal, []uint64{14, 15, 11, 12, 13}, []uint64{13, 11, 12, 15, 14}},
		{ColRemote, []uint64{14, 15, 11, 12, 13}, []uint64{13, 12, 11, 15, 14}},
		{ColOwner, []uint64{14, 15, 13, 11, 12}, []uint64{11, 12, 13, 14, 15}},
		{ColNetns, []uint64{13, 15, 11, 12, 14}, []uint64{14, 12, 11, 15, 13}}, // same name: by inode
		{ColAge, []uint64{13, 12, 11, 14, 15}, []uint64{15, 14, 11, 12, 13}},
		{ColLeft, []uint64{11, 15, 12, 13, 14}, []uint64{14, 13, 12, 15, 11}},
	} {
		if got := cookies(Sorted(cands, Sort{Col: tc.col})); !slices.Equal(got, tc.asc) {
			t.Errorf("sort %s: %v, want %v", tc.col, got, tc.asc)
		}
		if got := cookies(Sorted(cands, Sort{Col: tc.col, Desc: true})); !slices.Equal(got, tc.desc) {
			t.Errorf("sort %s,desc: %v, want %v", tc.col, got, tc.desc)
		}
	}
}

func TestParseSort(t *testing.T) {
	for in, want := range map[string]Sort{"left": {ColLeft, false}, "AGE,desc": {ColAge, true},
		"remote,asc": {ColRemote, false}, " netns , desc ": {ColNetns, true}} {
		got, err := ParseSort(in)
		if err != nil || got != want {
			t.Errorf("ParseSort(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "pid", "age,up", "age,desc,x"} {
		if _, err := ParseSort(bad); err == nil {
			t.Errorf("ParseSort(%q): no error", bad)
		}
	}
}

// TestSortKeys: s moves to the next column, S reverses; the selection
// follows its connection.
func TestSortKeys(t *testing.T) {
	m, _ := newTest(fixture(), 120, 40, Options{})
	if c, _ := m.Selected(); c.Conn.Cookie != 11 {
		t.Fatalf("first selected: cookie %d, want 11 (soonest deadline)", c.Conn.Cookie)
	}
	press(m, "s")
	if m.SortOrder() != (Sort{Col: ColState}) {
		t.Errorf("s from left: %v, want state", m.SortOrder())
	}
	press(m, "S")
	if m.SortOrder() != (Sort{Col: ColState, Desc: true}) {
		t.Errorf("S: %v, want state,desc", m.SortOrder())
	}
	if got := cookies(m.Rows()); !slices.Equal(got, []uint64{15, 14, 13, 11, 12}) {
		t.Errorf("rows: %v", got)
	}
	if c, _ := m.Selected(); c.Conn.Cookie != 11 {
		t.Errorf("selection after sort: cookie %d, want 11 still", c.Conn.Cookie)
	}
	if !strings.Contains(plain(t, m, 120, 40), "STATE▼") {
		t.Errorf("no ▼ on the sorted column")
	}
}

func TestFilter(t *testing.T) {
	cands := fixture().Candidates
	for filter, want := range map[string][]uint64{
		"":           {11, 12, 13, 14, 15},
		"close_wait": {11, 12},
		"fd00::":     {13},
		":22":        {14},
		"NGINX":      {11, 12},
		"812":        {11, 12},
		"db":         {15},
		"4026532013": {13}, // a namespace without a name, by inode
		"nothing":    nil,
	} {
		if got := cookies(Filtered(cands, filter)); !slices.Equal(got, want) {
			t.Errorf("filter %q: %v, want %v", filter, got, want)
		}
	}
	m, _ := newTest(fixture(), 120, 40, Options{})
	press(m, "/", "w", "e", "b")
	if m.Filter() != "web" || len(m.Rows()) != 3 {
		t.Fatalf("typing /web: filter %q, %d rows", m.Filter(), len(m.Rows()))
	}
	press(m, "backspace", "enter", "j") // j moves once the filter is kept
	if m.Filter() != "we" {
		t.Errorf("backspace: filter %q", m.Filter())
	}
	if c, _ := m.Selected(); c.Conn.Cookie != 12 {
		t.Errorf("j after the filter: cookie %d, want 12", c.Conn.Cookie)
	}
	press(m, "esc")
	if m.Filter() != "" || len(m.Rows()) != 5 {
		t.Errorf("esc: filter %q, %d rows", m.Filter(), len(m.Rows()))
	}
}

func TestCountdown(t *testing.T) {
	c := top.Candidate{Conn: conn.Conn{State: conn.CloseWait, Exact: true}, Age: 42 * time.Second,
		Threshold: 60 * time.Second, Left: 18 * time.Second}
	for _, tc := range []struct {
		after time.Duration
		left  string
		age   string
	}{
		{0, "in 18s", "42.0s"},
		{500 * time.Millisecond, "in 18s", "42.5s"}, // rounded up: 0s only when due
		{time.Second, "in 17s", "43.0s"},
		{17900 * time.Millisecond, "in 1s", "59.9s"},
		{18 * time.Second, "now", "60.0s"},
		{18900 * time.Millisecond, "now", "60.9s"},
		{30 * time.Second, "overdue 12s", "72.0s"},
		{18*time.Second + 5*time.Minute, "overdue 5m00s", "360.0s"},
	} {
		if got := Countdown(&c, tc.after); got != tc.left {
			t.Errorf("after %s: left %q, want %q", tc.after, got, tc.left)
		}
		if got := Age(&c, tc.after); got != tc.age {
			t.Errorf("after %s: age %q, want %q", tc.after, got, tc.age)
		}
	}
	long := c
	long.Left, long.Conn.Exact = 2*time.Hour+3*time.Minute+4*time.Second, false
	if got := Countdown(&long, 0); got != "in 2h03m" {
		t.Errorf("long countdown %q", got)
	}
	if got := Age(&long, 0); got != "≥42.0s" {
		t.Errorf("lower bound age %q, want ≥42.0s", got)
	}
	excl := c
	excl.Excluded = "excluded port 22"
	if got := Countdown(&excl, 0); got != "excluded: port 22" {
		t.Errorf("excluded: %q", got)
	}
	none := c
	none.Threshold = 0
	if got := Countdown(&none, 0); got != "-" {
		t.Errorf("no threshold: %q", got)
	}
}

// TestCountdownTicks: the model's clock moves the countdown between
// snapshots, and a pause freezes it.
func TestCountdownTicks(t *testing.T) {
	s := fixture()
	m, ck := newTest(s, 120, 40, Options{})
	press(m, "down", "down") // cookie 12: in 18s
	if !strings.Contains(plain(t, m, 120, 40), "in 18s") {
		t.Fatalf("no 'in 18s':\n%s", plain(t, m, 120, 40))
	}
	ck.now = t0.Add(5 * time.Second)
	m.Update(tickMsg{m.gen})
	if !strings.Contains(plain(t, m, 120, 40), "in 13s") {
		t.Errorf("5s later, no 'in 13s':\n%s", plain(t, m, 120, 40))
	}
	press(m, "space")
	ck.now = t0.Add(9 * time.Second)
	m.Update(tickMsg{m.gen})
	if !strings.Contains(plain(t, m, 120, 40), "in 13s") || !strings.Contains(plain(t, m, 120, 40), "PAUSED") {
		t.Errorf("paused: the countdown moved, or PAUSED is not shown:\n%s", plain(t, m, 120, 40))
	}
}

func TestRate(t *testing.T) {
	for _, tc := range []struct {
		v     float64
		known bool
		want  string
	}{{5, false, "-"}, {0, true, "0/s"}, {0.25, true, "0.2/s"}, {2.5, true, "2.5/s"}, {35.2, true, "35/s"},
		{9999, true, "9999/s"}, {12500, true, "12.5k/s"}} {
		if got := Rate(tc.v, tc.known); got != tc.want {
			t.Errorf("Rate(%v, %v) = %q, want %q", tc.v, tc.known, got, tc.want)
		}
	}
	// The first snapshot has no interval: every rate is unknown.
	s := fixture()
	s.Interval = 0
	m, _ := newTest(s, 120, 40, Options{})
	if out := plain(t, m, 120, 40); !strings.Contains(out, "transitions -") || strings.Contains(out, "35/s") {
		t.Errorf("first snapshot shows rates:\n%s", out)
	}
}

// TestPause: space stops the refreshes (ticks request no snapshot),
// space again requests one at once.
func TestPause(t *testing.T) {
	ck := &clock{now: t0}
	m := New(Options{Clock: ck.Now, NoColor: true, Sort: DefaultSort, Interval: time.Second,
		Source: func() (top.Snapshot, error) { return fixture(), nil }})
	requests := 0
	// step delivers the snapshot a request started (the command itself
	// would run the source off the UI's goroutine).
	step := func() {
		if m.fetching {
			requests++
			m.Update(snapMsg{fixture(), nil})
		}
	}
	m.take()
	step()
	ck.now = ck.now.Add(time.Second)
	m.Update(tickMsg{m.gen})
	step()
	if requests != 2 {
		t.Fatalf("running: %d snapshots after a tick, want 2", requests)
	}
	ck.now = ck.now.Add(500 * time.Millisecond)
	m.Update(tickMsg{m.gen})
	step()
	if requests != 2 {
		t.Fatalf("a tick before the interval took a snapshot")
	}
	press(m, "space")
	for i := 0; i < 3; i++ {
		ck.now = ck.now.Add(time.Second)
		m.Update(tickMsg{m.gen})
		step()
	}
	if requests != 2 || !m.Paused() {
		t.Fatalf("paused: %d snapshots, want still 2", requests)
	}
	press(m, "space")
	step()
	if requests != 3 || m.Paused() {
		t.Errorf("resumed: %d snapshots, want 3", requests)
	}
}

func TestIntervalBounds(t *testing.T) {
	m, _ := newTest(fixture(), 80, 24, Options{Interval: time.Second})
	press(m, "+")
	if m.Interval() != 2*time.Second {
		t.Errorf("+ from 1s: %s", m.Interval())
	}
	for i := 0; i < 20; i++ {
		press(m, "+")
	}
	if m.Interval() != MaxInterval {
		t.Errorf("many +: %s, want %s", m.Interval(), MaxInterval)
	}
	for i := 0; i < 20; i++ {
		press(m, "-")
	}
	if m.Interval() != MinInterval {
		t.Errorf("many -: %s, want %s", m.Interval(), MinInterval)
	}
	// A tick of the old ticker is ignored: one ticker at a time.
	gen := m.gen
	press(m, "+")
	if _, cmd := m.Update(tickMsg{gen}); cmd != nil {
		t.Errorf("a stale tick scheduled another")
	}
	if New(Options{Interval: time.Millisecond}).Interval() != MinInterval || New(Options{Interval: time.Hour}).Interval() != MaxInterval {
		t.Errorf("New does not bound the interval")
	}
	if stepDown(1500*time.Millisecond) != time.Second || stepUp(1500*time.Millisecond) != 2*time.Second {
		t.Errorf("steps from an interval between steps")
	}
}

// TestKillFlow: K is refused without --allow-kill; with it, K asks y/N
// about the selected connection, n (or any key) cancels, y destroys
// exactly that connection.
func TestKillFlow(t *testing.T) {
	var killed []conn.Conn
	kill := func(c conn.Conn) string { killed = append(killed, c); return "destroyed" }

	m, _ := newTest(fixture(), 120, 40, Options{Kill: kill})
	if cmd := press(m, "K"); cmd != nil || m.confirm != nil {
		t.Fatalf("K without --allow-kill asked or acted")
	}
	if !strings.Contains(m.Status(), "--allow-kill") {
		t.Errorf("K without --allow-kill: status %q", m.Status())
	}

	m, _ = newTest(fixture(), 120, 40, Options{AllowKill: true, Kill: kill})
	press(m, "down", "K") // cookie 15
	if m.confirm == nil {
		t.Fatal("K did not ask")
	}
	if out := plain(t, m, 120, 40); !strings.Contains(out, "(cookie 15)? y/N") {
		t.Errorf("no y/N question for cookie 15:\n%s", out)
	}
	if cmd := press(m, "n"); cmd != nil || m.confirm != nil || len(killed) != 0 {
		t.Fatalf("n destroyed or kept asking")
	}
	if m.Status() != "not destroyed" {
		t.Errorf("n: status %q", m.Status())
	}
	press(m, "K")
	if cmd := press(m, "enter"); cmd != nil || len(killed) != 0 {
		t.Fatalf("enter (the default, N) destroyed")
	}
	press(m, "K")
	cmd := press(m, "y")
	if cmd == nil {
		t.Fatal("y: nothing to run")
	}
	m.Update(cmd())
	if len(killed) != 1 || killed[0].Cookie != 15 || killed[0].State != conn.TimeWait {
		t.Fatalf("y destroyed %v, want cookie 15 in TIME_WAIT", killed)
	}
	if m.Status() != "destroyed" {
		t.Errorf("after the destroy: status %q", m.Status())
	}
}

func TestQuit(t *testing.T) {
	for _, k := range []string{"q", "ctrl+c"} {
		m, _ := newTest(fixture(), 80, 24, Options{})
		cmd := press(m, k)
		if cmd == nil {
			t.Fatalf("%s: no command", k)
		}
		if _, ok := cmd().(tea.QuitMsg); !ok {
			t.Errorf("%s: not a quit", k)
		}
	}
}

// TestResize: every size from 80×24 down to a tiny one (and wider) fills
// the screen exactly, never wider; the table keeps a row when it can.
func TestResize(t *testing.T) {
	m, _ := newTest(fixture(), 80, 24, Options{})
	for _, sz := range [][2]int{{200, 60}, {120, 40}, {100, 30}, {80, 24}, {60, 20}, {40, 10}, {30, 6}, {20, 3}} {
		m.Update(tea.WindowSizeMsg{Width: sz[0], Height: sz[1]})
		out := plain(t, m, sz[0], sz[1])
		if sz[1] >= 8 && !strings.Contains(out, "> ") {
			t.Errorf("%d×%d: the selected row is not shown:\n%s", sz[0], sz[1], out)
		}
	}
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	if out := plain(t, m, 80, 24); !strings.Contains(out, "excluded: port 22") || !strings.Contains(out, "overdue 15s") {
		t.Errorf("80×24 cuts the countdowns:\n%s", out)
	}
}

// TestPeersAge: the peers panel says how old the connection counts are
// (PeersAt, a full dump's time), growing with the clock between
// refreshes; "not counted yet" before the first.
func TestPeersAge(t *testing.T) {
	s := fixture() // counted 4s before the snapshot
	m, ck := newTest(s, 100, 30, Options{})
	if screen := plain(t, m, 100, 30); !strings.Contains(screen, "TOP PEERS by conns (counted 4s ago)") {
		t.Errorf("no 'counted 4s ago' in the peers' title:\n%s", screen)
	}
	ck.now = t0.Add(70 * time.Second)
	m.Update(tickMsg{m.gen})
	if screen := plain(t, m, 100, 30); !strings.Contains(screen, "(counted 1m14s ago)") {
		t.Errorf("70s later, no 'counted 1m14s ago':\n%s", screen)
	}
	s.PeersAt = time.Time{}
	m, _ = newTest(s, 100, 30, Options{})
	if screen := plain(t, m, 100, 30); !strings.Contains(screen, "TOP PEERS by conns (not counted yet)") {
		t.Errorf("never counted: no 'not counted yet':\n%s", screen)
	}
	s.PeersAt = t0.Add(-300 * time.Millisecond)
	m, _ = newTest(s, 100, 30, Options{})
	if screen := plain(t, m, 100, 30); !strings.Contains(screen, "(counted just now)") {
		t.Errorf("counted 0.3s before: no 'counted just now':\n%s", screen)
	}
}

// TestHeaderPolicy: the header says what the countdowns follow.
func TestHeaderPolicy(t *testing.T) {
	m, _ := newTest(fixture(), 120, 40, Options{})
	if h := strings.SplitN(plain(t, m, 120, 40), "\n", 2)[0]; !strings.Contains(h, "policy: service's /etc/hck-bpf/config.yaml") {
		t.Errorf("header %q does not name the policy", h)
	}
}
