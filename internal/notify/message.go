package notify

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// Schema names the json format's version: a field that changes meaning
// gets a new one.
const Schema = "hck-bpf.notify/v1"

// Message is one notification, the json format's payload as it is sent
// (the Slack and Discord payloads say the same in their own shapes).
type Message struct {
	Schema  string `json:"schema"`  // Schema
	Text    string `json:"text"`    // the headline: "12 connections destroyed on host X in the last 10 s"
	Host    string `json:"host"`    // the host name
	Mode    string `json:"mode"`    // "live" (a dry run destroys nothing, so sends nothing)
	Version string `json:"version"` // hck-bpf's
	// WindowStart and WindowEnd bound when what it counts happened
	// (several windows when the rate limit or a retry held messages back).
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	// Destroyed counts the connections destroyed, ByState by state
	// (CLOSE_WAIT...), ByRule by the config rule that decided ("default"
	// for the flags' thresholds).
	Destroyed int            `json:"destroyed"`
	ByState   map[string]int `json:"by_state"`
	ByRule    map[string]int `json:"by_rule"`
	// TopPeers counts by remote IP, TopProcesses by owner's comm ("-" for
	// none: orphans, TIME_WAIT), the TopN largest each; a key "others"
	// counts past 4096 distinct ones.
	TopPeers     []Count `json:"top_peers"`
	TopProcesses []Count `json:"top_processes"`
	// Connections lists the first Examples connections; MoreConnections
	// says how many it leaves out.
	Connections     []Connection `json:"connections"`
	MoreConnections int          `json:"more_connections"`
	// ProcessesTerminated and ProcessesKilled count the owners
	// --kill-process ended (after SIGTERM, after SIGKILL), EndedProcesses
	// by comm, the TopN largest.
	ProcessesTerminated int     `json:"processes_terminated"`
	ProcessesKilled     int     `json:"processes_killed"`
	EndedProcesses      []Count `json:"ended_processes"`
	// Dropped counts connections destroyed but left out of this message
	// and its counts: the notifier's queue was full.
	Dropped int `json:"dropped"`
}

// Count is one name and how many.
type Count struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// Connection is one destroyed connection.
type Connection struct {
	State   string `json:"state"`
	Local   string `json:"local"`
	Remote  string `json:"remote"`
	Process string `json:"process"` // comm, "" when none
	Rule    string `json:"rule"`    // "" for the flags'
	NetNS   string `json:"netns"`   // its namespace's name, "" when none is known
}

// Meta is what every message says of its sender.
type Meta struct {
	Host, Mode, Version string
}

// message is s as a Message.
func (s *summary) message(m Meta) Message {
	msg := Message{Schema: Schema, Host: m.Host, Mode: m.Mode, Version: m.Version,
		WindowStart: s.start.UTC(), WindowEnd: s.end.UTC(), Destroyed: s.destroyed,
		ByState: map[string]int{}, ByRule: map[string]int{},
		TopPeers: s.peers.top(TopN), TopProcesses: s.comms.top(TopN),
		Connections:         []Connection{},
		MoreConnections:     s.destroyed - len(s.examples),
		ProcessesTerminated: s.terminated, ProcessesKilled: s.killed,
		EndedProcesses: s.procComms.top(TopN), Dropped: s.dropped}
	for st, n := range s.byState {
		msg.ByState[st.String()] = n
	}
	for r, n := range s.byRule {
		if r == "" {
			r = "default"
		}
		msg.ByRule[r] += n
	}
	for _, k := range s.examples {
		msg.Connections = append(msg.Connections, Connection{State: k.state.String(),
			Local: k.local.String(), Remote: k.remote.String(), Process: k.comm, Rule: k.rule, NetNS: k.netns})
	}
	msg.Text = headline(&msg)
	return msg
}

// headline is a message's one line.
func headline(m *Message) string {
	span := m.WindowEnd.Sub(m.WindowStart).Round(time.Second)
	span = max(span, time.Second)
	var b strings.Builder
	fmt.Fprintf(&b, "%s destroyed on host %s in the last %s", plural(m.Destroyed, "connection"), m.Host, seconds(span))
	if n := m.ProcessesTerminated + m.ProcessesKilled; n > 0 {
		fmt.Fprintf(&b, "; %s ended by --kill-process", plural(n, "process"))
	}
	if m.Dropped > 0 {
		fmt.Fprintf(&b, "; %d more not reported (notification queue full)", m.Dropped)
	}
	return b.String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if strings.HasSuffix(what, "s") {
		return fmt.Sprintf("%d %ses", n, what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// seconds writes d as "10 s", "90 s".
func seconds(d time.Duration) string { return fmt.Sprintf("%d s", int(d/time.Second)) }

// stateOrder sorts states as the scripts list them.
func sortedStates(m map[string]int) []Count {
	var out []Count
	for _, s := range conn.ClosingStates {
		if n, ok := m[s.String()]; ok {
			out = append(out, Count{s.String(), n})
		}
	}
	for k, n := range m {
		if !slices.ContainsFunc(out, func(c Count) bool { return c.Name == k }) {
			out = append(out, Count{k, n})
		}
	}
	return out
}

func sortedRules(m map[string]int) []Count {
	c := counter{}
	for k, v := range m {
		c[k] = v
	}
	return c.top(len(c))
}

// lines writes counts one a line: "CLOSE_WAIT: 10".
func lines(cs []Count, esc func(string) string) string {
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s: %d", esc(c.Name), c.Count)
	}
	return b.String()
}

// connLines lists the message's connections, one a line.
func connLines(m *Message) string {
	var b strings.Builder
	for i, c := range m.Connections {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s %s -> %s", c.State, c.Local, c.Remote)
		if c.Process != "" {
			fmt.Fprintf(&b, " (%s)", c.Process)
		}
		if c.NetNS != "" {
			fmt.Fprintf(&b, " netns %s", c.NetNS)
		}
		if c.Rule != "" {
			fmt.Fprintf(&b, " rule %s", c.Rule)
		}
	}
	if m.MoreConnections > 0 {
		fmt.Fprintf(&b, "\n... and %d more", m.MoreConnections)
	}
	return b.String()
}

// payload is m in format f, as JSON.
func payload(f Format, m *Message) ([]byte, error) {
	switch f {
	case Slack:
		return json.Marshal(slackPayload(m))
	case Discord:
		return json.Marshal(discordPayload(m))
	}
	return json.Marshal(m)
}

// SlackMessage is a Slack incoming webhook's payload: text (the
// notification's fallback) and Block Kit blocks.
type SlackMessage struct {
	Text   string       `json:"text"`
	Blocks []SlackBlock `json:"blocks"`
}

// SlackBlock is one Block Kit block (section or context).
type SlackBlock struct {
	Type     string      `json:"type"`
	Text     *SlackText  `json:"text,omitempty"`
	Fields   []SlackText `json:"fields,omitempty"`
	Elements []SlackText `json:"elements,omitempty"`
}

// SlackText is a Block Kit text object.
type SlackText struct {
	Type string `json:"type"` // mrkdwn
	Text string `json:"text"`
}

// slackEscape escapes what Slack's mrkdwn reads as control: a process
// name "<!channel>" must not ping anyone.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace

func slackPayload(m *Message) SlackMessage {
	md := func(s string) SlackText { return SlackText{Type: "mrkdwn", Text: s} }
	head := md("*" + slackEscape(m.Text) + "*")
	var fields []SlackText
	add := func(title string, cs []Count) {
		if len(cs) > 0 {
			fields = append(fields, md("*"+title+"*\n"+lines(cs, slackEscape)))
		}
	}
	add("By state", sortedStates(m.ByState))
	add("Top peers", m.TopPeers)
	add("Top processes", m.TopProcesses)
	add("Rules", sortedRules(m.ByRule))
	add("Processes ended", m.EndedProcesses)
	blocks := []SlackBlock{{Type: "section", Text: &head}}
	if len(fields) > 0 {
		blocks = append(blocks, SlackBlock{Type: "section", Fields: fields})
	}
	if len(m.Connections) > 0 {
		t := md("```" + slackEscape(connLines(m)) + "```")
		blocks = append(blocks, SlackBlock{Type: "section", Text: &t})
	}
	blocks = append(blocks, SlackBlock{Type: "context", Elements: []SlackText{md(slackEscape(footer(m)))}})
	return SlackMessage{Text: m.Text, Blocks: blocks}
}

func footer(m *Message) string {
	return fmt.Sprintf("hck-bpf %s, %s, %s to %s UTC", m.Version, m.Mode,
		m.WindowStart.Format("2006-01-02 15:04:05"), m.WindowEnd.Format("15:04:05"))
}

// DiscordMessage is a Discord webhook's payload: content and one embed;
// allowed_mentions parses none, so a process name "@everyone" pings
// nobody.
type DiscordMessage struct {
	Content         string          `json:"content"`
	Embeds          []DiscordEmbed  `json:"embeds"`
	AllowedMentions DiscordMentions `json:"allowed_mentions"`
}

// DiscordMentions is Discord's allowed_mentions.
type DiscordMentions struct {
	Parse []string `json:"parse"`
}

// DiscordEmbed is one embed.
type DiscordEmbed struct {
	Title       string         `json:"title"`
	Description string         `json:"description,omitempty"`
	Fields      []DiscordField `json:"fields,omitempty"`
	Timestamp   string         `json:"timestamp"`
	Footer      DiscordFooter  `json:"footer"`
}

// DiscordField is one embed field.
type DiscordField struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Inline bool   `json:"inline"`
}

// DiscordFooter is an embed's footer.
type DiscordFooter struct {
	Text string `json:"text"`
}

func discordPayload(m *Message) DiscordMessage {
	e := DiscordEmbed{Title: "hck-bpf on " + m.Host, Timestamp: m.WindowEnd.Format(time.RFC3339),
		Footer: DiscordFooter{Text: footer(m)}}
	id := func(s string) string { return s }
	add := func(title string, cs []Count) {
		if len(cs) > 0 {
			e.Fields = append(e.Fields, DiscordField{Name: title, Value: lines(cs, id), Inline: true})
		}
	}
	add("By state", sortedStates(m.ByState))
	add("Top peers", m.TopPeers)
	add("Top processes", m.TopProcesses)
	add("Rules", sortedRules(m.ByRule))
	add("Processes ended", m.EndedProcesses)
	if len(m.Connections) > 0 {
		// In a code block: no markdown in process names.
		e.Description = "```\n" + strings.ReplaceAll(connLines(m), "```", "'''") + "\n```"
	}
	return DiscordMessage{Content: m.Text, Embeds: []DiscordEmbed{e}, AllowedMentions: DiscordMentions{Parse: []string{}}}
}
