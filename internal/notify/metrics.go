package notify

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// The notifier's metrics. A webhook is named by its index (its place
// among --webhook flags, then the config's) and its format, never by its
// URL: that holds its secret.
var (
	descMessages = prometheus.NewDesc("hck_notify_messages_total",
		"Notification messages by webhook and result: sent, or failed (refused, or still failing after the retries).",
		[]string{"webhook", "format", "result"}, nil)
	descRetries = prometheus.NewDesc("hck_notify_retries_total",
		"Notification tries after a first failed one (network error, 5xx, 408, 429).",
		[]string{"webhook", "format"}, nil)
	descLimited = prometheus.NewDesc("hck_notify_rate_limited_total",
		"Times a notification waited for the webhook's token bucket or for its Retry-After.",
		[]string{"webhook", "format"}, nil)
	descDropped = prometheus.NewDesc("hck_notify_dropped_total",
		"Destroyed connections and ended processes left out of notifications: the notifier's queue was full.",
		nil, nil)
)

// Describe implements prometheus.Collector.
func (n *Notifier) Describe(ch chan<- *prometheus.Desc) {
	ch <- descMessages
	ch <- descRetries
	ch <- descLimited
	ch <- descDropped
}

// Collect implements prometheus.Collector.
func (n *Notifier) Collect(ch chan<- prometheus.Metric) {
	hooks, dropped := n.Stats()
	for i, s := range hooks {
		idx, f := strconv.Itoa(i), s.Webhook.Format.String()
		ch <- prometheus.MustNewConstMetric(descMessages, prometheus.CounterValue, float64(s.Sent), idx, f, "sent")
		ch <- prometheus.MustNewConstMetric(descMessages, prometheus.CounterValue, float64(s.Failed), idx, f, "failed")
		ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(s.Retried), idx, f)
		ch <- prometheus.MustNewConstMetric(descLimited, prometheus.CounterValue, float64(s.RateLimited), idx, f)
	}
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(dropped))
}
