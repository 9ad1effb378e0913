package top

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/report"
)

// The JSON document of one Snapshot (WriteJSON): one line each, the schema
// the README's "JSON output" documents. Durations are seconds.
type jsonSnapshot struct {
	At          time.Time   `json:"at"`
	IntervalS   float64     `json:"interval_s"`
	Service     bool        `json:"service"`
	Mode        string      `json:"mode"`
	Policy      string      `json:"policy"`
	Namespaces  int         `json:"namespaces"`
	Transitions float64     `json:"transitions_per_s"`
	States      []jsonState `json:"states"`
	Syn         jsonSyn     `json:"syn"`
	Peers       []jsonPeer  `json:"peers"`
	PeersAt     *time.Time  `json:"peers_at"`
	Candidates  []jsonCand  `json:"candidates"`
	Kills       []jsonKill  `json:"kills"`
	Warnings    []string    `json:"warnings"`
}

type jsonState struct {
	State string  `json:"state"`
	Count int     `json:"count"`
	PerS  float64 `json:"per_s"`
}

type jsonSyn struct {
	HalfOpen        int     `json:"half_open"`
	CookiesSent     uint64  `json:"syncookies_sent"`
	CookiesPerS     float64 `json:"syncookies_per_s"`
	ListenOverflows uint64  `json:"listen_overflows"`
	OverflowsPerS   float64 `json:"listen_overflows_per_s"`
	Alarm           bool    `json:"alarm"`
}

type jsonPeer struct {
	Addr  string `json:"addr"`
	Conns int    `json:"conns"`
	Hung  int    `json:"hung"`
}

type jsonConn struct {
	Cookie    uint64 `json:"cookie"`
	State     string `json:"state"`
	Local     string `json:"local"`
	Remote    string `json:"remote"`
	NetNS     uint32 `json:"netns"`
	NetNSName string `json:"netns_name,omitempty"`
	PID       int    `json:"pid,omitempty"`
	Process   string `json:"process,omitempty"`
}

type jsonCand struct {
	jsonConn
	AgeS       float64 `json:"age_s"`
	AgeExact   bool    `json:"age_exact"`
	ThresholdS float64 `json:"threshold_s"`
	LeftS      float64 `json:"left_s"`
	Hung       bool    `json:"hung"`
	Excluded   string  `json:"excluded,omitempty"`
	Rule       string  `json:"rule,omitempty"`
}

type jsonKill struct {
	jsonConn
	At     time.Time `json:"at"`
	AgeS   float64   `json:"age_s"`
	Reason string    `json:"reason"`
	Rule   string    `json:"rule,omitempty"`
}

func connJSON(c *conn.Conn) jsonConn {
	j := jsonConn{Cookie: c.Cookie, State: c.State.String(), Local: c.Local.String(), Remote: c.Remote.String(),
		NetNS: c.NetNS, NetNSName: c.NetNSName}
	if c.Owner != nil {
		j.PID, j.Process = c.Owner.PID, c.Owner.Comm
	}
	return j
}

// WriteJSON writes snap as one JSON document on one line.
func WriteJSON(w io.Writer, snap Snapshot) error {
	j := jsonSnapshot{At: snap.At, IntervalS: snap.Interval.Seconds(), Service: snap.Service, Mode: snap.Mode, Policy: snap.Policy,
		Namespaces: snap.Namespaces, Transitions: snap.Transitions,
		States: []jsonState{}, Peers: []jsonPeer{}, Candidates: []jsonCand{}, Kills: []jsonKill{}, Warnings: []string{},
		Syn: jsonSyn{HalfOpen: snap.Syn.HalfOpen, CookiesSent: snap.Syn.CookiesSent, CookiesPerS: snap.Syn.CookiesPerSec,
			ListenOverflows: snap.Syn.ListenOverflows, OverflowsPerS: snap.Syn.OverflowsPerSec, Alarm: snap.Syn.Alarm}}
	for _, s := range snap.States {
		j.States = append(j.States, jsonState{State: s.State.String(), Count: s.Count, PerS: s.PerSec})
	}
	if !snap.PeersAt.IsZero() {
		j.PeersAt = &snap.PeersAt
	}
	for _, p := range snap.Peers {
		j.Peers = append(j.Peers, jsonPeer{Addr: p.Addr.String(), Conns: p.Conns, Hung: p.Hung})
	}
	for _, c := range snap.Candidates {
		j.Candidates = append(j.Candidates, jsonCand{jsonConn: connJSON(&c.Conn), AgeS: c.Age.Seconds(), AgeExact: c.Conn.Exact,
			ThresholdS: c.Threshold.Seconds(), LeftS: c.Left.Seconds(), Hung: c.Threshold > 0 && c.Left <= 0,
			Excluded: c.Excluded, Rule: c.Rule})
	}
	for _, k := range snap.Kills {
		j.Kills = append(j.Kills, jsonKill{jsonConn: connJSON(&k.Conn), At: k.At, AgeS: k.Age.Seconds(), Reason: k.Reason, Rule: k.Rule})
	}
	j.Warnings = append(j.Warnings, snap.Warnings...)
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteTable writes snap as plain tables: states, SYN pressure, peers,
// candidates and kills, each list cut to maxRows (0: no limit).
func WriteTable(w io.Writer, snap Snapshot, maxRows int) error {
	cut := func(n int) int {
		if maxRows > 0 && n > maxRows {
			return maxRows
		}
		return n
	}
	rate := func(v float64) string {
		if snap.Interval == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	svc := "no service"
	if snap.Service {
		svc = "service running"
		if snap.Mode != "" {
			svc += " (" + snap.Mode + ")"
		}
	}
	fmt.Fprintf(tw, "# %s  %s  policy: %s  %d namespace(s)  transitions/s %s\n", snap.At.Format(time.RFC3339), svc, snap.Policy, snap.Namespaces, rate(snap.Transitions))
	for _, m := range snap.Warnings {
		fmt.Fprintf(tw, "# warning: %s\n", m)
	}
	fmt.Fprintln(tw, "\nSTATE\tCOUNT\tENTRIES/S")
	for _, s := range snap.States {
		count := "?"
		if s.Count >= 0 {
			count = fmt.Sprint(s.Count)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.State, count, rate(s.PerSec))
	}
	alarm := ""
	if snap.Syn.Alarm {
		alarm = "\tALARM"
	}
	fmt.Fprintf(tw, "\nSYN_RECV half-open %d\tsyncookies sent %d (%s/s)\tlisten overflows %d (%s/s)%s\n", snap.Syn.HalfOpen,
		snap.Syn.CookiesSent, rate(snap.Syn.CookiesPerSec), snap.Syn.ListenOverflows, rate(snap.Syn.OverflowsPerSec), alarm)
	fmt.Fprintln(tw, "\nPEER\tCONNS\tHUNG")
	if !snap.PeersAt.IsZero() && snap.PeersAt.Before(snap.At) {
		fmt.Fprintf(tw, "(conns counted %s ago)\t\t\n", snap.At.Sub(snap.PeersAt).Round(time.Second))
	}
	for _, p := range snap.Peers[:cut(len(snap.Peers))] {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", p.Addr, p.Conns, p.Hung)
	}
	fmt.Fprintln(tw, "\nSTATE\tLOCAL\tREMOTE\tAGE\tLEFT\tPROCESS\tNETNS\tCOOKIE")
	for _, c := range snap.Candidates[:cut(len(snap.Candidates))] {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", c.Conn.State, c.Conn.Local, c.Conn.Remote,
			policy.FormatAge(c.Age, c.Conn.Exact), leftText(&c), process(&c.Conn), report.NetNS(c.Conn.NetNS, c.Conn.NetNSName), c.Conn.Cookie)
	}
	fmt.Fprintln(tw, "\nKILLED\tSTATE\tLOCAL\tREMOTE\tAGE\tPROCESS\tREASON")
	for _, k := range snap.Kills[:cut(len(snap.Kills))] {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.At.Format(time.TimeOnly), k.Conn.State, k.Conn.Local, k.Conn.Remote,
			policy.FormatAge(k.Age, k.Conn.Exact), process(&k.Conn), k.Reason)
	}
	return tw.Flush()
}

// leftText is a candidate's countdown: the time left, "hung", or why it
// is spared.
func leftText(c *Candidate) string {
	switch {
	case c.Excluded != "":
		return "excluded: " + strings.ReplaceAll(c.Excluded, "\t", " ")
	case c.Threshold == 0:
		return "-"
	case c.Left <= 0:
		return "hung"
	}
	return policy.FormatAge(c.Left, true)
}

func process(c *conn.Conn) string {
	if c.Owner == nil {
		return "-"
	}
	if c.Owner.PID == 0 {
		return c.Owner.Comm
	}
	return fmt.Sprintf("%s[%d]", c.Owner.Comm, c.Owner.PID)
}
