// Package ui is `hck-bpf top`'s full-screen view: a bubbletea model over
// the snapshots internal/top takes, with htop's keys.
package ui

import (
	"fmt"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/top"
)

// The refresh interval's bounds, and the steps + and - move through.
const (
	MinInterval = 250 * time.Millisecond
	MaxInterval = 60 * time.Second
)

var intervalSteps = []time.Duration{MinInterval, 500 * time.Millisecond, time.Second, 2 * time.Second,
	3 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second, MaxInterval}

// Options configure a Model.
type Options struct {
	// Source takes one snapshot; it is called off the UI's goroutine,
	// never twice at once.
	Source func() (top.Snapshot, error)
	// Interval between snapshots, within [MinInterval, MaxInterval].
	Interval time.Duration
	// MaxRows caps the candidates table (0: as many as fit).
	MaxRows int
	Sort    Sort
	Filter  string
	// AllowKill enables K; Kill destroys exactly c (cookie and state, in
	// its namespace) and says what became of it in one line.
	AllowKill bool
	Kill      func(c conn.Conn) string
	// Host and Scope are shown in the header ("network namespace x").
	Host, Scope string
	// SynAlarm is the --syn-alarm threshold shown with the alarm (0: none).
	SynAlarm int
	// NoColor renders without colours (bold and reverse only).
	NoColor bool
	// Clock is the time (tests pass a fixed one); time.Now by default.
	Clock func() time.Time
}

// Model is top's bubbletea model.
type Model struct {
	opts     Options
	st       styles
	width    int
	height   int
	interval time.Duration
	sort     Sort
	filter   string
	editing  bool // typing a filter after /

	snap     top.Snapshot
	have     bool // a snapshot arrived
	err      error
	now      time.Time
	lastTake time.Time
	fetching bool
	paused   bool
	gen      int // the ticker's generation: a changed interval restarts it

	sel     int    // index into rows()
	selCook uint64 // the selected candidate's cookie, kept across refreshes
	offset  int    // first row shown

	help    bool
	details bool
	confirm *top.Candidate // K asked y/N about this one
	killing bool
	status  string // one line for the footer, until the next key
}

// New returns a model; it takes its first snapshot when started.
func New(o Options) *Model {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	o.Interval = min(max(o.Interval, MinInterval), MaxInterval)
	return &Model{opts: o, st: newStyles(o.NoColor), interval: o.Interval, sort: o.Sort, filter: o.Filter,
		width: 80, height: 24, now: o.Clock()}
}

// Messages.
type (
	snapMsg struct {
		s   top.Snapshot
		err error
	}
	tickMsg struct{ gen int }
	killMsg struct{ text string }
)

// Init takes the first snapshot and starts the ticker.
func (m *Model) Init() tea.Cmd { return tea.Batch(m.take(), m.tick()) }

// take starts a snapshot, unless one is under way.
func (m *Model) take() tea.Cmd {
	if m.fetching || m.opts.Source == nil {
		return nil
	}
	m.fetching, m.lastTake = true, m.opts.Clock()
	src := m.opts.Source
	return func() tea.Msg {
		s, err := src()
		return snapMsg{s, err}
	}
}

// tick wakes the model every second (or every interval when shorter): the
// countdowns move between snapshots, and a snapshot is due every interval.
func (m *Model) tick() tea.Cmd {
	gen := m.gen
	return tea.Tick(min(m.interval, time.Second), func(time.Time) tea.Msg { return tickMsg{gen} })
}

// Interval is the refresh interval now.
func (m *Model) Interval() time.Duration { return m.interval }

// Paused reports whether refreshes are paused.
func (m *Model) Paused() bool { return m.paused }

// SortOrder is the candidates' order now.
func (m *Model) SortOrder() Sort { return m.sort }

// Filter is the filter now.
func (m *Model) Filter() string { return m.filter }

// Status is the footer's message.
func (m *Model) Status() string { return m.status }

// Rows are the candidates shown, filtered and sorted.
func (m *Model) Rows() []top.Candidate {
	return Sorted(Filtered(m.snap.Candidates, m.filter), m.sort)
}

// Selected is the selected candidate, if any.
func (m *Model) Selected() (top.Candidate, bool) {
	rows := m.Rows()
	if m.sel < 0 || m.sel >= len(rows) {
		return top.Candidate{}, false
	}
	return rows[m.sel], true
}

// Update handles keys, snapshots, ticks and resizes.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.clamp()
	case snapMsg:
		m.fetching = false
		m.err = msg.err
		if msg.err == nil {
			m.snap, m.have = msg.s, true
			if !m.paused {
				m.now = m.opts.Clock()
			}
			m.follow()
		}
	case tickMsg:
		if msg.gen != m.gen {
			return m, nil // an interval change restarted the ticker
		}
		var cmd tea.Cmd
		if !m.paused {
			m.now = m.opts.Clock()
			if m.now.Sub(m.lastTake) >= m.interval {
				cmd = m.take()
			}
		}
		return m, tea.Batch(cmd, m.tick())
	case killMsg:
		m.killing, m.status = false, msg.text
		return m, m.take()
	case tea.KeyPressMsg:
		return m, m.key(msg)
	}
	return m, nil
}

// key handles one key press.
func (m *Model) key(k tea.KeyPressMsg) tea.Cmd {
	s := k.String()
	if s == "ctrl+c" {
		return tea.Quit
	}
	switch {
	case m.confirm != nil:
		c := *m.confirm
		m.confirm = nil
		if s != "y" && s != "Y" {
			m.status = "not destroyed"
			return nil
		}
		return m.destroy(c)
	case m.editing:
		switch s {
		case "enter":
			m.editing = false
		case "esc":
			m.editing, m.filter = false, ""
		case "backspace":
			if r := []rune(m.filter); len(r) > 0 {
				m.filter = string(r[:len(r)-1])
			}
		default:
			if k.Text != "" {
				m.filter += k.Text
			}
		}
		m.follow()
		return nil
	case m.help:
		if s == "?" || s == "esc" || s == "q" || s == "enter" {
			m.help = false
		}
		return nil
	case m.details:
		switch s {
		case "esc", "enter", "q":
			m.details = false
		case "K":
			return m.askKill()
		}
		return nil
	}
	m.status = ""
	switch {
	case key.Matches(k, keys.Quit):
		return tea.Quit
	case key.Matches(k, keys.Up):
		m.move(-1)
	case key.Matches(k, keys.Down):
		m.move(1)
	case key.Matches(k, keys.PageUp):
		m.move(-max(1, m.tableRows()))
	case key.Matches(k, keys.PageDown):
		m.move(max(1, m.tableRows()))
	case key.Matches(k, keys.Home):
		m.move(-len(m.snap.Candidates))
	case key.Matches(k, keys.End):
		m.move(len(m.snap.Candidates))
	case key.Matches(k, keys.Details):
		if _, ok := m.Selected(); ok {
			m.details = true
		}
	case key.Matches(k, keys.Sort):
		m.sort.Col = (m.sort.Col + 1) % numColumns
		m.follow()
	case key.Matches(k, keys.Reverse):
		m.sort.Desc = !m.sort.Desc
		m.follow()
	case key.Matches(k, keys.Filter):
		m.editing = true
	case key.Matches(k, keys.Clear):
		m.filter = ""
		m.follow()
	case key.Matches(k, keys.Pause):
		m.paused = !m.paused
		if !m.paused {
			m.now = m.opts.Clock()
			return m.take()
		}
	case key.Matches(k, keys.Slower):
		return m.setInterval(stepUp(m.interval))
	case key.Matches(k, keys.Faster):
		return m.setInterval(stepDown(m.interval))
	case key.Matches(k, keys.Kill):
		return m.askKill()
	case key.Matches(k, keys.Help):
		m.help = true
	}
	return nil
}

// stepUp is the next interval step above d (MaxInterval at most).
func stepUp(d time.Duration) time.Duration {
	for _, s := range intervalSteps {
		if s > d {
			return s
		}
	}
	return MaxInterval
}

// stepDown is the next interval step below d (MinInterval at least).
func stepDown(d time.Duration) time.Duration {
	for i := len(intervalSteps) - 1; i >= 0; i-- {
		if intervalSteps[i] < d {
			return intervalSteps[i]
		}
	}
	return MinInterval
}

func (m *Model) setInterval(d time.Duration) tea.Cmd {
	if d == m.interval {
		return nil
	}
	m.interval = d
	m.gen++
	m.status = "refresh every " + d.String()
	return m.tick()
}

// askKill starts K's y/N question about the selected candidate.
func (m *Model) askKill() tea.Cmd {
	c, ok := m.Selected()
	switch {
	case !m.opts.AllowKill || m.opts.Kill == nil:
		m.status = "K: destroying needs top --allow-kill"
	case !ok:
		m.status = "K: no connection selected"
	case m.killing:
		m.status = "K: a destroy is under way"
	default:
		m.confirm = &c
	}
	return nil
}

// destroy destroys c off the UI's goroutine.
func (m *Model) destroy(c top.Candidate) tea.Cmd {
	m.killing = true
	m.status = fmt.Sprintf("destroying cookie %d…", c.Conn.Cookie)
	kill := m.opts.Kill
	return func() tea.Msg { return killMsg{kill(c.Conn)} }
}

// move moves the selection by n rows.
func (m *Model) move(n int) {
	rows := m.Rows()
	m.sel = min(max(m.sel+n, 0), max(len(rows)-1, 0))
	if m.sel < len(rows) {
		m.selCook = rows[m.sel].Conn.Cookie
	}
	m.clamp()
}

// follow keeps the selection on the same connection after the rows
// changed (a refresh, a sort, a filter), or in range when it is gone.
func (m *Model) follow() {
	rows := m.Rows()
	for i := range rows {
		if rows[i].Conn.Cookie == m.selCook && m.selCook != 0 {
			m.sel = i
			m.clamp()
			return
		}
	}
	m.sel = min(max(m.sel, 0), max(len(rows)-1, 0))
	if m.sel < len(rows) {
		m.selCook = rows[m.sel].Conn.Cookie
	}
	m.clamp()
}

// clamp keeps the selected row on screen.
func (m *Model) clamp() {
	n := m.tableRows()
	if n <= 0 {
		return
	}
	if m.sel < m.offset {
		m.offset = m.sel
	}
	if m.sel >= m.offset+n {
		m.offset = m.sel - n + 1
	}
	m.offset = max(0, min(m.offset, len(m.Rows())-n))
}
