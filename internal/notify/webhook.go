// Package notify sends what the service destroyed to webhooks (Slack,
// Discord, or plain JSON): one batched message per window, under a token
// bucket per webhook, with Retry-After honoured and bounded retries. The
// sweep hands its reports over without ever waiting: a slow or dead
// receiver delays no kill.
package notify

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Format is a webhook's payload format.
type Format uint8

// The payload formats.
const (
	JSON    Format = iota // the documented schema (Message)
	Slack                 // an incoming webhook: text + blocks
	Discord               // an execute-webhook call: content + embeds
)

var formatNames = [...]string{JSON: "json", Slack: "slack", Discord: "discord"}

func (f Format) String() string {
	if int(f) < len(formatNames) {
		return formatNames[f]
	}
	return fmt.Sprintf("format(%d)", uint8(f))
}

// Webhook is one receiver of notifications.
type Webhook struct {
	Format Format
	URL    *url.URL
}

// String names the webhook without its secrets: the format and the URL
// with its path, query and user redacted (Redact).
func (w Webhook) String() string { return w.Format.String() + " " + Redact(w.URL) }

// Redact is u as it may be logged: scheme and host only. A webhook URL's
// path or query usually is its secret (Slack's and Discord's are).
func Redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	s := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		s += "/..."
	}
	return s
}

// Parse reads a --webhook value: [FORMAT=]URL, FORMAT one of slack,
// discord, json. Without FORMAT it is told by the host: hooks.slack.com is
// Slack, discord.com and discordapp.com (and their subdomains) Discord,
// any other JSON. Only http and https URLs with a host are accepted. Its
// errors never hold the URL's path or query.
func Parse(s string) (Webhook, error) {
	var w Webhook
	raw := strings.TrimSpace(s)
	format := ""
	if i := strings.IndexByte(raw, '='); i >= 0 {
		// A '=' before "://" (or with none) ends a format; a later one is
		// the URL's query.
		if j := strings.Index(raw, "://"); j < 0 || i < j {
			format, raw = raw[:i], raw[i+1:]
		}
	}
	if raw == "" {
		return w, fmt.Errorf("parse webhook: no URL (want [slack=|discord=|json=]https://...)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error holds the URL: name only the reason.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return w, fmt.Errorf("parse webhook: invalid URL: %v", err)
	}
	switch u.Scheme {
	case "http", "https":
	case "":
		return w, fmt.Errorf("parse webhook: %s: no scheme (want http:// or https://)", Redact(u))
	default:
		return w, fmt.Errorf("parse webhook: %s: scheme %q is not http or https", Redact(u), u.Scheme)
	}
	if u.Hostname() == "" {
		return w, fmt.Errorf("parse webhook: %s: no host", Redact(u))
	}
	w.URL = u
	switch strings.ToLower(format) {
	case "":
		w.Format = detect(u.Hostname())
	case "slack":
		w.Format = Slack
	case "discord":
		w.Format = Discord
	case "json":
		w.Format = JSON
	default:
		return w, fmt.Errorf("parse webhook: unknown format %q (want slack, discord or json)", format)
	}
	return w, nil
}

// detect tells the format from the host.
func detect(host string) Format {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	switch {
	case host == "hooks.slack.com":
		return Slack
	case host == "discord.com" || host == "discordapp.com" ||
		strings.HasSuffix(host, ".discord.com") || strings.HasSuffix(host, ".discordapp.com"):
		return Discord
	}
	return JSON
}
