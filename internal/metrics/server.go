package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ParseAddr checks a --metrics-addr value, HOST:PORT: HOST an IP address
// (IPv6 in brackets), "localhost", or empty for every address; PORT a
// number, 0 for any free one. It returns the address to listen on.
func ParseAddr(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("invalid address %q: want HOST:PORT such as 127.0.0.1:9477, [::1]:9477 or :9477", s)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return "", fmt.Errorf("invalid address %q: host %q is not an IP address (or localhost)", s, host)
		}
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
		return "", fmt.Errorf("invalid address %q: port %q is not a number from 0 to 65535", s, port)
	}
	return net.JoinHostPort(host, port), nil
}

// Listen opens addr (ParseAddr's) for the metrics server. An address in
// use is an error naming it.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err // "bind: address already in use", without the address again
		}
		return nil, fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	return ln, nil
}

// Health says whether the service loop is alive: it beats (Beat, from
// daemon.Config.Heartbeat) at least every few seconds once its first sweep
// is done; no beat for longer than its limit means a wedged loop.
type Health struct {
	last  atomic.Int64 // time.Now().UnixNano() of the last beat; 0: none yet
	limit time.Duration
	now   func() time.Time
}

// NewHealth is a health check that fails when no beat came for limit.
func NewHealth(limit time.Duration) *Health {
	return &Health{limit: limit, now: time.Now}
}

// Beat records that the loop is alive. Safe from any goroutine.
func (h *Health) Beat() { h.last.Store(h.now().UnixNano()) }

// Check is nil while the loop is healthy, else why not.
func (h *Health) Check() error {
	last := h.last.Load()
	if last == 0 {
		return errors.New("starting: the first sweep has not finished")
	}
	if since := h.now().Sub(time.Unix(0, last)); since > h.limit {
		return fmt.Errorf("the service loop has not reported for %s (limit %s): wedged or stopping", since.Round(time.Second), h.limit)
	}
	return nil
}

// Handler serves /metrics (m's registry) and /healthz (h: 200 "ok", or 503
// with the reason).
func (m *Metrics) Handler(h *Health) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A metric that cannot be read (the tracker's counters) is left
		// out and the rest served.
		ErrorHandling: promhttp.ContinueOnError,
		// At most a few scrapes at once; more wait for a free slot.
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := h.Check(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Server is the metrics server running on a listener.
type Server struct {
	srv  *http.Server
	done chan error
}

// Serve serves handler on ln until Close.
func Serve(ln net.Listener, handler http.Handler) *Server {
	s := &Server{
		srv: &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          log.New(io.Discard, "", 0), // a client's broken connection is not the service's business
		},
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s
}

// Close stops the server: no new scrape, the ones running finish (up to
// 5 s). It returns why the server stopped, if not asked to.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("serve metrics: %w", serr))
	}
	return err
}
