package main

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/hck-bpf/hck-bpf/internal/notify"
	"github.com/hck-bpf/hck-bpf/internal/policy"
)

// webhookFlags are run's notifications.
type webhookFlags struct {
	raw       []string
	windowArg string
	hooks     []notify.Webhook
	window    time.Duration
}

func (w *webhookFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&w.raw, "webhook", nil, "send what was destroyed to this webhook, one batched message per window:\n[slack=|discord=|json=]https://... (repeatable; without FORMAT= told by the host, JSON for any other)")
	fs.StringVar(&w.windowArg, "webhook-window", "10", "how long kills are gathered into one webhook message (seconds, or 10s); for tests and tuning")
	_ = fs.MarkHidden("webhook-window")
}

// parse validates the flags, before anything is loaded.
func (w *webhookFlags) parse() error {
	for _, s := range w.raw {
		h, err := notify.Parse(s)
		if err != nil {
			return usagef("--webhook: %v", err)
		}
		w.hooks = append(w.hooks, h)
	}
	d, err := policy.ParseDuration(w.windowArg)
	if err != nil {
		return usagef("--webhook-window: %v", err)
	}
	if d <= 0 {
		return usagef("--webhook-window: must be more than 0")
	}
	w.window = d
	return nil
}

// notifyFlush bounds how long the service, stopping, sends its last
// window: systemd's stop timeout is far longer, a dead receiver never
// holds the exit.
const notifyFlush = 2500 * time.Millisecond

// notifyWarnEvery is the most often the service logs that messages
// failed or were dropped.
const notifyWarnEvery = time.Minute

// startNotifier starts the notifier for w's webhooks (nil without any)
// and a watcher that logs, at most every notifyWarnEvery, what failed or
// was dropped. stop flushes the last window and stops both.
func startNotifier(w *webhookFlags, log zerolog.Logger, dryRun bool) (n *notify.Notifier, stop func()) {
	if len(w.hooks) == 0 {
		return nil, func() {}
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	mode := "live"
	if dryRun {
		mode = "dry-run"
	}
	n = notify.New(w.hooks, notify.Options{Meta: notify.Meta{Host: host, Mode: mode, Version: version}, Window: w.window})
	arr := zerolog.Arr()
	var names []string
	for _, h := range w.hooks {
		arr.Str(h.String())
		names = append(names, h.String())
	}
	ev := log.Info().Array("webhooks", arr).Dur("window", w.window)
	if dryRun {
		ev.Msgf("webhooks: a dry run destroys nothing, so sends nothing to %s", strings.Join(names, ", "))
	} else {
		ev.Msgf("webhooks: one message per %s with what was destroyed, to %s", w.window, strings.Join(names, ", "))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchNotifier(ctx, n, log)
	}()
	return n, func() {
		cancel()
		<-done
		fctx, fcancel := context.WithTimeout(context.Background(), notifyFlush)
		defer fcancel()
		if err := n.Shutdown(fctx); err != nil {
			log.Warn().Err(err).Msg("webhooks: the last messages were not all sent")
		}
		warnNotifier(log, n, &notifySeen{})
	}
}

// notifySeen is what watchNotifier last logged.
type notifySeen struct {
	failed  []uint64
	dropped uint64
}

// watchNotifier logs new failures and drops, at most every notifyWarnEvery.
func watchNotifier(ctx context.Context, n *notify.Notifier, log zerolog.Logger) {
	seen := &notifySeen{}
	t := time.NewTicker(notifyWarnEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			warnNotifier(log, n, seen)
		}
	}
}

// warnNotifier logs what failed or was dropped since seen.
func warnNotifier(log zerolog.Logger, n *notify.Notifier, seen *notifySeen) {
	hooks, dropped := n.Stats()
	for i, s := range hooks {
		if len(seen.failed) <= i {
			seen.failed = append(seen.failed, 0)
		}
		if s.Failed > seen.failed[i] {
			log.Warn().Int("webhook", i).Str("url", s.Webhook.String()).Uint64("failed", s.Failed-seen.failed[i]).
				Str("error", s.LastError).Msgf("webhook %d: %d messages not sent: %s", i, s.Failed-seen.failed[i], s.LastError)
			seen.failed[i] = s.Failed
		}
	}
	if dropped > seen.dropped {
		log.Warn().Uint64("dropped", dropped-seen.dropped).
			Msgf("webhooks: %d destroyed connections left out of messages: the queue was full", dropped-seen.dropped)
		seen.dropped = dropped
	}
}
