package ui

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/top"
)

// styles are the view's styles; without colour only bold, faint and
// reverse remain, so that nothing colours a NO_COLOR terminal.
type styles struct {
	title, head, sel, hung, excl, alarm, warn, dim, key lipgloss.Style
}

func newStyles(noColor bool) styles {
	s := lipgloss.NewStyle
	st := styles{
		title: s().Bold(true),
		head:  s().Bold(true).Reverse(true),
		sel:   s().Reverse(true),
		hung:  s().Bold(true),
		excl:  s().Faint(true),
		alarm: s().Bold(true).Reverse(true),
		warn:  s().Bold(true),
		dim:   s().Faint(true),
		key:   s().Bold(true),
	}
	if noColor {
		return st
	}
	st.title = st.title.Foreground(lipgloss.Color("6"))
	st.head = s().Bold(true).Foreground(lipgloss.Color("0")).Background(lipgloss.Color("6"))
	st.hung = st.hung.Foreground(lipgloss.Color("1"))
	st.alarm = s().Bold(true).Foreground(lipgloss.Color("15")).Background(lipgloss.Color("1"))
	st.warn = st.warn.Foreground(lipgloss.Color("3"))
	st.key = st.key.Foreground(lipgloss.Color("6"))
	return st
}

// View renders the screen: exactly the terminal's height in lines, none
// wider than it.
func (m *Model) View() tea.View {
	v := tea.NewView(m.Render())
	v.AltScreen = true
	v.WindowTitle = "hck-bpf top"
	return v
}

// layout is how many lines each panel gets at the current size (0: dropped).
type layout struct {
	warn, states, syn, peers, table, kills int
}

const maxPanelRows = 5

// lay shares the body's lines: the candidates table first (a title, its
// header and 3 rows at least), then, while they fit, the states, the SYN
// line, the warnings, the peers and the kills, in that order; what is left
// goes to the table.
func (m *Model) lay() layout {
	body := m.height - 2 // header, footer
	var l layout
	if body <= 0 {
		return l
	}
	minTable := min(body, 5)
	left := body - minTable
	take := func(want, least int) int {
		if least <= 0 || left < least {
			return 0
		}
		n := min(want, left)
		left -= n
		return n
	}
	l.states = take(1+(len(m.snap.States)+m.stateCols()-1)/m.stateCols(), 1+(len(m.snap.States)+m.stateCols()-1)/m.stateCols())
	l.syn = take(1, 1)
	if m.snap.Syn.Alarm && l.syn == 0 && minTable > 3 {
		l.syn, minTable = 1, minTable-1 // the alarm is worth a table row
	}
	if len(m.warnings()) > 0 {
		l.warn = take(1, 1)
	}
	l.peers = take(1+min(maxPanelRows, max(1, len(m.snap.Peers))), 2)
	l.kills = take(1+min(maxPanelRows, max(1, len(m.snap.Kills))), 2)
	l.table = minTable + left
	if m.opts.MaxRows > 0 {
		l.table = min(l.table, m.opts.MaxRows+2)
	}
	return l
}

// tableRows is how many candidates fit in the table.
func (m *Model) tableRows() int { return max(0, m.lay().table-2) }

func (m *Model) stateCols() int { return max(1, (m.width+1)/stateCellWidth) }

const stateCellWidth = 30

// warnings are the snapshot's warnings, and the last refresh's error.
func (m *Model) warnings() []string {
	w := slices.Clone(m.snap.Warnings)
	if m.err != nil {
		w = append(w, "refresh: "+m.err.Error())
	}
	return w
}

// Render is the screen as a string (View's content).
func (m *Model) Render() string {
	if m.width <= 0 || m.height <= 0 {
		return ""
	}
	var lines []string
	lines = append(lines, m.header())
	switch {
	case m.help:
		lines = append(lines, m.helpLines()...)
	case m.details:
		lines = append(lines, m.detailLines()...)
	default:
		l := m.lay()
		if l.warn > 0 {
			lines = append(lines, m.st.warn.Render("! "+strings.Join(m.warnings(), "; ")))
		}
		if l.states > 0 {
			lines = append(lines, m.stateLines(l.states)...)
		}
		if l.syn > 0 {
			lines = append(lines, m.synLine())
		}
		if l.peers > 0 {
			lines = append(lines, m.peerLines(l.peers)...)
		}
		lines = append(lines, m.tableLines(l.table)...)
		if l.kills > 0 {
			lines = append(lines, m.killLines(l.kills)...)
		}
	}
	body := m.height - 1
	for len(lines) < body {
		lines = append(lines, "")
	}
	lines = append(lines[:body], m.footer())
	for i := range lines {
		lines[i] = fit(lines[i], m.width)
	}
	return strings.Join(lines[:m.height], "\n")
}

// fit truncates a line to w cells, with an ellipsis where it was cut.
func fit(s string, w int) string {
	if ansi.StringWidth(s) <= w {
		return s
	}
	return ansi.Truncate(s, w, "…")
}

// pad renders s in exactly w cells: cut with an ellipsis, or padded.
func pad(s string, w int) string {
	s = fit(s, w)
	return s + strings.Repeat(" ", max(0, w-ansi.StringWidth(s)))
}

func padLeft(s string, w int) string {
	s = fit(s, w)
	return strings.Repeat(" ", max(0, w-ansi.StringWidth(s))) + s
}

func (m *Model) header() string {
	s := &m.snap
	parts := []string{m.st.title.Render("hck-bpf top")}
	if m.paused {
		parts = append(parts, m.st.alarm.Render("PAUSED"))
	}
	if m.opts.Host != "" {
		parts = append(parts, m.opts.Host)
	}
	switch {
	case !m.have:
		parts = append(parts, "service: ?")
	case s.Service && s.Mode != "":
		parts = append(parts, "service: running ("+s.Mode+")")
	case s.Service:
		parts = append(parts, "service: running")
	default:
		parts = append(parts, "service: not running")
	}
	if m.have && s.Policy != "" {
		parts = append(parts, "policy: "+s.Policy)
	}
	parts = append(parts, "every "+m.interval.String())
	if m.opts.Scope != "" {
		parts = append(parts, m.opts.Scope)
	} else if s.Namespaces > 0 {
		parts = append(parts, fmt.Sprintf("%d netns", s.Namespaces))
	}
	if !s.At.IsZero() {
		parts = append(parts, s.At.Format("15:04:05"))
	}
	return strings.Join(parts, " · ")
}

func (m *Model) stateLines(n int) []string {
	s := &m.snap
	known := s.Interval > 0
	lines := []string{m.st.title.Render("STATES") + fmt.Sprintf("  %d states · transitions %s", len(s.States), Rate(s.Transitions, known))}
	cols := m.stateCols()
	var row []string
	for i, sc := range s.States {
		count := "?"
		if sc.Count >= 0 {
			count = fmt.Sprint(sc.Count)
		}
		cell := fmt.Sprintf("%-12s %7s %8s", sc.State, count, Rate(sc.PerSec, known))
		if sc.State.Closing() && sc.Count > 0 {
			cell = m.st.key.Render(cell)
		}
		row = append(row, pad(cell, stateCellWidth-1))
		if len(row) == cols || i == len(s.States)-1 {
			lines = append(lines, strings.TrimRight(strings.Join(row, " "), " "))
			row = nil
		}
	}
	if len(s.States) == 0 {
		lines = append(lines, m.st.dim.Render("no sockets"))
	}
	return lines[:min(n, len(lines))]
}

func (m *Model) synLine() string {
	y := &m.snap.Syn
	known := m.snap.Interval > 0
	line := fmt.Sprintf("%s  half-open %d · syn cookies %d (%s) · listen overflows %d (%s)",
		m.st.title.Render("SYN_RECV"), y.HalfOpen, y.CookiesSent, Rate(y.CookiesPerSec, known),
		y.ListenOverflows, Rate(y.OverflowsPerSec, known))
	if y.Alarm {
		alarm := "ALARM"
		if m.opts.SynAlarm > 0 {
			alarm = fmt.Sprintf("ALARM ≥%d half-open", m.opts.SynAlarm)
		}
		line = m.st.alarm.Render(" "+alarm+" ") + " " + line
	}
	return line
}

func (m *Model) peerLines(n int) []string {
	half := max(20, (m.width-1)/2)
	byHung := slices.Clone(m.snap.Peers)
	byHung = slices.DeleteFunc(byHung, func(p top.Peer) bool { return p.Hung == 0 })
	slices.SortStableFunc(byHung, func(a, b top.Peer) int {
		if c := cmp.Compare(b.Hung, a.Hung); c != 0 {
			return c
		}
		return a.Addr.Compare(b.Addr)
	})
	lines := []string{pad(m.st.title.Render("TOP PEERS")+" by conns "+m.st.dim.Render(PeersAge(&m.snap, m.now)), half) + " " +
		m.st.title.Render("TOP PEERS") + " by hung"}
	aw := min(39, half-2-7)
	for i := 0; i < n-1; i++ {
		l, r := "", ""
		if i < len(m.snap.Peers) {
			p := m.snap.Peers[i]
			l = fmt.Sprintf("  %s %6d", pad(p.Addr.String(), aw), p.Conns)
		} else if i == 0 {
			l = m.st.dim.Render("  none")
		}
		if i < len(byHung) {
			p := byHung[i]
			r = fmt.Sprintf("  %s %6d", pad(p.Addr.String(), aw), p.Hung)
		} else if i == 0 {
			r = m.st.dim.Render("  none")
		}
		lines = append(lines, strings.TrimRight(pad(l, half)+" "+r, " "))
	}
	return lines
}

// column is one column of the candidates table at the current width.
type column struct {
	col   Column
	title string
	w     int
	least int
	right bool
}

// cell is a candidate's text in column c.
func (m *Model) cell(c Column, r *top.Candidate) string {
	d := elapsed(&m.snap, m.now)
	switch c {
	case ColState:
		return r.Conn.State.String()
	case ColLocal:
		return r.Conn.Local.String()
	case ColRemote:
		return r.Conn.Remote.String()
	case ColOwner:
		return Owner(&r.Conn)
	case ColNetns:
		return Netns(&r.Conn)
	case ColAge:
		return Age(r, d)
	case ColLeft:
		return Countdown(r, d)
	}
	return ""
}

// columns sizes the table to the width: each column as wide as its
// widest cell, then, when they do not fit, the countdown and the
// namespace shrink to their least (cut with "…"), the namespace goes,
// the owner and the addresses shrink, and the owner, then the age, go.
func (m *Model) columns(rows []top.Candidate) []column {
	cols := []column{
		{ColState, "STATE", 0, 11, false},
		{ColLocal, "LOCAL", 0, 15, false},
		{ColRemote, "REMOTE", 0, 15, false},
		{ColOwner, "OWNER", 0, 8, false},
		{ColNetns, "NETNS", 0, 8, false},
		{ColAge, "AGE", 0, 8, true},
		{ColLeft, "LEFT", 0, 17, false},
	}
	caps := map[Column]int{ColOwner: 24, ColNetns: 20, ColLeft: 32}
	for i := range cols {
		c := &cols[i]
		c.w = ansi.StringWidth(c.title) + 1 // room for the sort arrow
		for j := range rows {
			c.w = max(c.w, ansi.StringWidth(m.cell(c.col, &rows[j])))
		}
		if cp, ok := caps[c.col]; ok {
			c.w = min(c.w, cp)
		}
		c.least = min(c.least, c.w)
	}
	avail := func() int {
		n := m.width - 2 // the selection gutter
		for _, c := range cols {
			n -= c.w + 1
		}
		return n + 1
	}
	shrink := func(col Column) {
		if over := -avail(); over > 0 {
			if i := slices.IndexFunc(cols, func(c column) bool { return c.col == col }); i >= 0 {
				cols[i].w -= min(over, cols[i].w-cols[i].least)
			}
		}
	}
	drop := func(col Column) {
		if avail() < 0 {
			cols = slices.DeleteFunc(cols, func(c column) bool { return c.col == col })
		}
	}
	shrink(ColLeft)
	shrink(ColNetns)
	drop(ColNetns)
	for _, col := range []Column{ColOwner, ColRemote, ColLocal} {
		shrink(col)
	}
	drop(ColOwner)
	drop(ColAge)
	// Spare room goes to the countdown, up to its cap.
	if i := slices.IndexFunc(cols, func(c column) bool { return c.col == ColLeft }); i >= 0 && avail() > 0 {
		want := 0
		for j := range rows {
			want = max(want, ansi.StringWidth(m.cell(ColLeft, &rows[j])))
		}
		cols[i].w += min(avail(), max(0, want-cols[i].w))
	}
	return cols
}

func (m *Model) tableLines(n int) []string {
	if n <= 0 {
		return nil
	}
	rows := m.Rows()
	title := m.st.title.Render("HUNG CANDIDATES") + fmt.Sprintf("  %d", len(rows))
	if len(rows) != len(m.snap.Candidates) {
		title += fmt.Sprintf(" of %d", len(m.snap.Candidates))
	}
	title += " · sort " + m.sort.String()
	if m.filter != "" || m.editing {
		title += " · filter " + fmt.Sprintf("%q", m.filter)
	}
	lines := []string{title}
	if n == 1 {
		return lines
	}
	cols := m.columns(rows)
	var head []string
	for _, c := range cols {
		t := c.title
		if c.col == m.sort.Col {
			if m.sort.Desc {
				t += "▼"
			} else {
				t += "▲"
			}
		}
		if c.right {
			head = append(head, padLeft(t, c.w))
		} else {
			head = append(head, pad(t, c.w))
		}
	}
	lines = append(lines, m.st.head.Render(pad("  "+strings.Join(head, " "), m.width)))
	shown := n - 2
	if len(rows) == 0 && shown > 0 {
		msg := "no tracked socket in a closing state"
		if len(m.snap.Candidates) > 0 {
			msg = "no candidate matches the filter"
		}
		lines = append(lines, m.st.dim.Render("  "+msg))
	}
	for i := m.offset; i < len(rows) && i < m.offset+shown; i++ {
		r := &rows[i]
		var cells []string
		for _, c := range cols {
			if c.right {
				cells = append(cells, padLeft(m.cell(c.col, r), c.w))
			} else {
				cells = append(cells, pad(m.cell(c.col, r), c.w))
			}
		}
		gutter := "  "
		if i == m.sel {
			gutter = "> "
		}
		line := strings.TrimRight(gutter+strings.Join(cells, " "), " ")
		switch {
		case i == m.sel:
			line = m.st.sel.Render(pad(line, m.width))
		case r.Excluded != "":
			line = m.st.excl.Render(line)
		case r.Threshold > 0 && LeftAt(r, elapsed(&m.snap, m.now)) <= 0:
			line = m.st.hung.Render(line)
		}
		lines = append(lines, line)
	}
	return lines
}

func (m *Model) killLines(n int) []string {
	lines := []string{m.st.title.Render("LATEST KILLS") + fmt.Sprintf("  %d", len(m.snap.Kills))}
	if len(m.snap.Kills) == 0 {
		return append(lines, m.st.dim.Render("  none"))
	}
	for i := 0; i < len(m.snap.Kills) && i < n-1; i++ {
		k := &m.snap.Kills[i]
		ago := "-"
		if !k.At.IsZero() {
			ago = Short(m.now.Sub(k.At)) + " ago"
		}
		owner := Owner(&k.Conn)
		lines = append(lines, fmt.Sprintf("  %s %-11s %s -> %s  %s  %s", padLeft(ago, 10), k.Conn.State, k.Conn.Local, k.Conn.Remote, owner, k.Reason))
	}
	return lines
}

func (m *Model) footer() string {
	switch {
	case m.confirm != nil:
		c := &m.confirm.Conn
		return m.st.alarm.Render(fmt.Sprintf("Destroy %s %s -> %s (cookie %d)? y/N", c.State, c.Local, c.Remote, c.Cookie))
	case m.editing:
		return "filter: " + m.filter + "█  (Enter keeps it, Esc clears)"
	case m.status != "":
		return m.st.warn.Render(m.status)
	}
	keys := [][2]string{{"↑↓", "move"}, {"⏎", "details"}, {"s/S", "sort"}, {"/", "filter"}, {"space", "pause"},
		{"+/-", "interval"}, {"K", "kill"}, {"?", "help"}, {"q", "quit"}}
	if !m.opts.AllowKill {
		keys = slices.Delete(keys, 6, 7)
	}
	// What fits, always ending with help and quit.
	tail := m.st.key.Render("?") + " help  " + m.st.key.Render("q") + " quit"
	out, w := "", ansi.StringWidth(tail)
	for _, k := range keys[:len(keys)-2] {
		part := m.st.key.Render(k[0]) + " " + k[1] + "  "
		if w+ansi.StringWidth(part) > m.width {
			break
		}
		out, w = out+part, w+ansi.StringWidth(part)
	}
	return out + tail
}

// Keys are top's keys and what they do, for the help screen and the README.
var Keys = [][2]string{
	{"↑/↓, j/k", "move the selection (PgUp/PgDn: a page, g/G: the ends)"},
	{"Enter", "details of the selected connection (Esc closes)"},
	{"s", "sort by the next column: state local remote owner netns age left"},
	{"S", "reverse the sort order"},
	{"/", "filter on state, addresses, owner or namespace (Esc clears)"},
	{"space", "pause / resume refreshing"},
	{"+ / -", "refresh less / more often (250ms to 60s)"},
	{"K", "destroy the selected connection now, after y/N (--allow-kill)"},
	{"?", "this help"},
	{"q, Ctrl+C", "quit"},
}

func (m *Model) helpLines() []string {
	lines := []string{m.st.title.Render("KEYS") + "  (? or Esc closes)"}
	for _, k := range Keys {
		lines = append(lines, "  "+pad(m.st.key.Render(k[0]), 10)+" "+k[1])
	}
	if !m.opts.AllowKill {
		lines = append(lines, "", "  K is off: start top with --allow-kill to destroy from here.")
	}
	return lines
}

func (m *Model) detailLines() []string {
	r, ok := m.Selected()
	if !ok {
		return []string{"no connection selected"}
	}
	d := elapsed(&m.snap, m.now)
	c := &r.Conn
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	lines := []string{m.st.title.Render("CONNECTION") + "  (Esc closes)",
		fmt.Sprintf("  cookie     %d", c.Cookie),
		fmt.Sprintf("  state      %s", c.State),
		fmt.Sprintf("  local      %s", c.Local),
		fmt.Sprintf("  remote     %s", c.Remote),
		fmt.Sprintf("  netns      %s (inode %d)", Netns(c), c.NetNS),
		fmt.Sprintf("  age        %s (exact: %s)", Age(&r, d), yes(c.Exact)),
	}
	if r.Threshold > 0 {
		lines = append(lines, fmt.Sprintf("  threshold  %s", policy.FormatThreshold(r.Threshold)))
	}
	lines = append(lines, fmt.Sprintf("  left       %s", Countdown(&r, d)))
	if r.Rule != "" {
		lines = append(lines, fmt.Sprintf("  rule       %s", r.Rule))
	}
	if o := c.Owner; o != nil {
		lines = append(lines, fmt.Sprintf("  owner      %s", Owner(c)))
		if o.Cgroup != "" {
			lines = append(lines, fmt.Sprintf("  cgroup     %s", o.Cgroup))
		}
		if o.ContainerID != "" {
			lines = append(lines, fmt.Sprintf("  container  %s", o.ContainerID))
		}
		if o.PodUID != "" {
			lines = append(lines, fmt.Sprintf("  pod        %s", o.PodUID))
		}
	} else {
		lines = append(lines, "  owner      -")
	}
	lines = append(lines, fmt.Sprintf("  timewait   %s · orphan %s", yes(c.Timewait), yes(c.Orphan)),
		"", "  "+Reason(&r, d))
	return lines
}
