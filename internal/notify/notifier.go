package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/sweep"
)

// Defaults of Options.
const (
	DefaultWindow        = 10 * time.Second
	DefaultQueue         = 10000
	DefaultBurst         = 3
	DefaultRefill        = 10 * time.Second
	DefaultRetries       = 3
	DefaultBackoff       = time.Second
	DefaultMaxRetryAfter = 5 * time.Minute
	DefaultTimeout       = 10 * time.Second
	maxBackoff           = 30 * time.Second
)

// Options of a Notifier; zero values take the defaults.
type Options struct {
	Meta
	// Window is how long kills are gathered into one message: the first
	// destroy opens a window, its end sends what it gathered.
	Window time.Duration
	// Queue bounds the connections (and ended processes) handed over by
	// sweeps and not yet gathered; past it they are dropped and counted.
	Queue int
	// Burst and Refill are each webhook's token bucket: at most Burst
	// messages at once, then one per Refill. Windows that end while the
	// bucket is empty are merged into the next message.
	Burst  int
	Refill time.Duration
	// Retries bounds the tries after the first on a network error, a 5xx,
	// a 408 or a 429 (negative: none); Backoff is the first wait, doubled each time (at
	// most 30 s), unless the answer's Retry-After says otherwise (capped
	// at MaxRetryAfter).
	Retries       int
	Backoff       time.Duration
	MaxRetryAfter time.Duration
	// Timeout bounds one request, connecting included.
	Timeout time.Duration
	// Client sends the requests; nil is a client with Timeout that follows
	// no redirect.
	Client *http.Client
}

func (o *Options) defaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Window, DefaultWindow)
	def(&o.Refill, DefaultRefill)
	def(&o.Backoff, DefaultBackoff)
	def(&o.MaxRetryAfter, DefaultMaxRetryAfter)
	def(&o.Timeout, DefaultTimeout)
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.Burst <= 0 {
		o.Burst = DefaultBurst
	}
	switch {
	case o.Retries == 0:
		o.Retries = DefaultRetries
	case o.Retries < 0:
		o.Retries = 0 // none
	}
	if o.Client == nil {
		o.Client = newClient(o.Timeout)
	}
}

// newClient is an HTTP client with timeouts on every step that follows no
// redirect (a POST turned into a GET elsewhere helps nobody).
func newClient(timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: min(timeout, 5*time.Second), KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   min(timeout, 5*time.Second),
		ResponseHeaderTimeout: timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   1,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Notifier gathers what sweeps destroyed and sends it to webhooks. Swept
// hands a report over without waiting; Shutdown flushes the last window.
type Notifier struct {
	opts  Options
	hooks []*hook

	mu      sync.Mutex
	kills   []kill
	procs   []proc
	lost    int  // dropped since the aggregator last looked
	stopped bool // Shutdown called: Swept takes nothing more

	wake     chan struct{} // something in kills/procs
	stop     chan struct{} // closed by Shutdown: flush
	stopOnce sync.Once
	abort    context.Context // cancelled when the flush ran out of time
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	dropped atomic.Uint64
}

// hook is one webhook and its sender.
type hook struct {
	n     *Notifier
	index int
	w     Webhook

	mu      sync.Mutex
	pending *summary // gathered, not yet sent
	lastErr string
	wake    chan struct{}
	final   chan struct{} // closed when the aggregator handed its last window

	tokens float64
	filled time.Time

	sent, failed, retried, limited atomic.Uint64
}

// New starts a Notifier sending to hooks.
func New(hooks []Webhook, opts Options) *Notifier {
	opts.defaults()
	n := &Notifier{opts: opts, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	n.abort, n.cancel = context.WithCancel(context.Background())
	for i, w := range hooks {
		h := &hook{n: n, index: i, w: w, wake: make(chan struct{}, 1), final: make(chan struct{}),
			tokens: float64(opts.Burst), filled: time.Now()}
		n.hooks = append(n.hooks, h)
	}
	n.wg.Add(1 + len(n.hooks))
	go n.gather()
	for _, h := range n.hooks {
		go h.run()
	}
	return n
}

// Webhooks are the notifier's webhooks, in order (their index is their
// label in metrics).
func (n *Notifier) Webhooks() []Webhook {
	out := make([]Webhook, len(n.hooks))
	for i, h := range n.hooks {
		out[i] = h.w
	}
	return out
}

// Swept takes what report r destroyed (and what --kill-process ended):
// the daemon's Swept hook. It copies what a message needs and returns; it
// never waits for a webhook. Past Options.Queue waiting connections, the
// rest are dropped and counted.
func (n *Notifier) Swept(r *sweep.Report) {
	if r == nil || r.Destroyed == 0 && r.ProcessesTerminated+r.ProcessesKilled == 0 {
		return
	}
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return
	}
	k0, p0 := len(n.kills), len(n.procs)
	n.kills, n.procs = collect(r, n.kills, n.procs)
	lost := 0
	if over := len(n.kills) + len(n.procs) - n.opts.Queue; over > 0 {
		// Keep the connections first: they are what a message counts.
		cutP := min(over, len(n.procs)-p0)
		n.procs = n.procs[:len(n.procs)-cutP]
		cutK := min(over-cutP, len(n.kills)-k0)
		n.kills = n.kills[:len(n.kills)-cutK]
		lost = cutP + cutK
		n.lost += lost
	}
	n.mu.Unlock()
	if lost > 0 {
		n.dropped.Add(uint64(lost))
	}
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// take empties the queue into s (a new one when nil) and returns it.
func (n *Notifier) take(s *summary, now time.Time) *summary {
	n.mu.Lock()
	ks, ps, lost := n.kills, n.procs, n.lost
	n.kills, n.procs, n.lost = nil, nil, 0
	n.mu.Unlock()
	if len(ks) == 0 && len(ps) == 0 && lost == 0 {
		return s
	}
	if s == nil {
		s = newSummary(now)
	}
	for _, k := range ks {
		s.addKill(k)
	}
	for _, p := range ps {
		s.addProc(p)
	}
	s.dropped += lost
	return s
}

// gather folds the queue into windows and hands each ended window to
// every webhook.
func (n *Notifier) gather() {
	defer n.wg.Done()
	var cur *summary
	var end <-chan time.Time
	hand := func() {
		if cur != nil {
			cur.end = time.Now()
			for _, h := range n.hooks {
				h.offer(cur)
			}
		}
		cur, end = nil, nil
	}
	for {
		select {
		case <-n.wake:
			opened := cur == nil
			cur = n.take(cur, time.Now())
			if opened && cur != nil {
				end = time.After(n.opts.Window)
			}
		case <-end:
			hand()
		case <-n.stop:
			cur = n.take(cur, time.Now())
			hand()
			for _, h := range n.hooks {
				close(h.final)
			}
			return
		}
	}
}

// offer merges window s into what h has to send.
func (h *hook) offer(s *summary) {
	h.mu.Lock()
	if h.pending == nil {
		h.pending = newSummary(s.start)
	}
	h.pending.merge(s)
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// claim takes what h has to send, merged into s when s is not nil.
func (h *hook) claim(s *summary) *summary {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.pending
	h.pending = nil
	if s == nil {
		return p
	}
	if p != nil {
		s.merge(p)
	}
	return s
}

func (h *hook) has() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pending != nil
}

// run sends h's messages until the final flush is done or aborted.
func (h *hook) run() {
	defer h.n.wg.Done()
	final := false
	for {
		if !h.has() {
			if final {
				return
			}
			select {
			case <-h.wake:
			case <-h.final:
				final = true
			case <-h.n.abort.Done():
				return
			}
			continue
		}
		// The token bucket; the last flush at shutdown takes none.
		if !final {
			if wait := h.token(time.Now()); wait > 0 {
				h.limited.Add(1)
				select {
				case <-time.After(wait):
				case <-h.final:
					final = true
				case <-h.n.abort.Done():
					return
				}
				continue
			}
		}
		if !h.send(h.claim(nil)) {
			return
		}
	}
}

// token takes a token, or says how long until one is there.
func (h *hook) token(now time.Time) time.Duration {
	o := &h.n.opts
	h.tokens = min(float64(o.Burst), h.tokens+float64(now.Sub(h.filled))/float64(o.Refill))
	h.filled = now
	if h.tokens >= 1 {
		h.tokens--
		return 0
	}
	return time.Duration((1 - h.tokens) * float64(o.Refill))
}

// send posts s, retrying; what arrives meanwhile joins it. It returns
// false when the shutdown aborted it.
func (h *hook) send(s *summary) bool {
	o := &h.n.opts
	for try := 0; ; try++ {
		msg := s.message(o.Meta)
		body, err := payload(h.w.Format, &msg)
		if err != nil { // cannot happen: plain structs
			h.fail(fmt.Errorf("encode %s message: %w", h.w.Format, err))
			return true
		}
		wait, retry, err := h.post(body)
		if err == nil {
			h.sent.Add(1)
			return true
		}
		if !retry || try >= o.Retries || h.n.abort.Err() != nil {
			h.fail(err)
			return h.n.abort.Err() == nil
		}
		h.retried.Add(1)
		if wait > 0 {
			h.limited.Add(1)
		} else {
			wait = backoff(o.Backoff, try)
		}
		select {
		case <-time.After(wait):
		case <-h.n.abort.Done():
			h.fail(err)
			return false
		}
		s = h.claim(s)
	}
}

func (h *hook) fail(err error) {
	h.failed.Add(1)
	h.mu.Lock()
	h.lastErr = err.Error()
	h.mu.Unlock()
}

// backoff is the wait before retry try+1: base doubled try times, at most
// maxBackoff, plus up to a quarter more so that hosts spread out.
func backoff(base time.Duration, try int) time.Duration {
	d := base << min(try, 16)
	if d <= 0 || d > maxBackoff {
		d = maxBackoff
	}
	return d + rand.N(d/4+1)
}

// post sends one message. On failure it says whether to retry, and how
// long the receiver asked to wait (Retry-After on a 429 or 503; 0 when
// it said nothing). Its errors never hold the URL's path or query.
func (h *hook) post(body []byte) (wait time.Duration, retry bool, err error) {
	o := &h.n.opts
	ctx, cancel := context.WithTimeout(h.n.abort, o.Timeout)
	defer cancel()
	what := fmt.Sprintf("post to webhook %d (%s)", h.index, h.w)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.w.URL.String(), bytes.NewReader(body))
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", what, stripURL(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "hck-bpf/"+o.Version)
	resp, err := o.Client.Do(req)
	if err != nil {
		return 0, true, fmt.Errorf("%s: %w", what, stripURL(err))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, false, nil
	}
	err = fmt.Errorf("%s: %s%s", what, resp.Status, bodyText(snippet))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		return RetryAfter(resp.Header.Get("Retry-After"), time.Now(), o.MaxRetryAfter), true, err
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout:
		return 0, true, err
	}
	return 0, false, err
}

// stripURL is err without the URL that url.Error puts in it.
func stripURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// bodyText is a receiver's answer as a short single-line suffix.
func bodyText(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if s == "" {
		return ""
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return ": " + strconv.Quote(s)
}

// RetryAfter reads a Retry-After header at now: delay-seconds or an HTTP
// date; 0 when absent, invalid or past, at most max.
func RetryAfter(v string, now time.Time, max time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max, d) // negative: d <= 0 is "no wait"
}

// Shutdown stops taking reports, sends what was gathered (the window
// under way included, without waiting for the token bucket) and returns
// once every webhook is done, or when ctx ends: then it abandons the
// requests under way and returns ctx's error.
func (n *Notifier) Shutdown(ctx context.Context) error {
	n.stopOnce.Do(func() {
		n.mu.Lock()
		n.stopped = true
		n.mu.Unlock()
		close(n.stop)
	})
	done := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		n.cancel()
		return nil
	case <-ctx.Done():
		n.cancel()
		<-done
		return fmt.Errorf("flush notifications: %w", ctx.Err())
	}
}

// Stats of one webhook.
type Stats struct {
	Webhook Webhook
	// Sent and Failed count messages (a failed one was tried 1+Retries
	// times, or refused for good); Retried counts the tries after a first;
	// RateLimited counts the waits for the token bucket or a Retry-After.
	Sent, Failed, Retried, RateLimited uint64
	LastError                          string // the last failure's, "" when none
}

// Stats are the webhooks' counters, in order, and how many connections
// (and ended processes) were dropped because the queue was full.
func (n *Notifier) Stats() (hooks []Stats, dropped uint64) {
	for _, h := range n.hooks {
		h.mu.Lock()
		last := h.lastErr
		h.mu.Unlock()
		hooks = append(hooks, Stats{Webhook: h.w, Sent: h.sent.Load(), Failed: h.failed.Load(),
			Retried: h.retried.Load(), RateLimited: h.limited.Load(), LastError: last})
	}
	return hooks, n.dropped.Load()
}
