//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The tracker: stamps the exact time every TCP socket enters one of the six
 * closing states, keyed by socket cookie, and forgets it when it leaves them. */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "hck.h"
#include "states.h"
#include "sock.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The tracked sockets: cookie -> entry. Sized from userspace (--map-size;
 * the size here is the default). No preallocation: memory follows the
 * sockets really tracked, and a full map fails the update (counted, and
 * announced once to a listening service) instead of evicting a socket whose
 * age we know. Pinned by name: every hck-bpf process, and bpftool, opens the
 * same map. Only this program writes entries; userspace walks them, seeds
 * them from the sockets iterator and removes them (reconcile, sweeps). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, struct hck_conn);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hck_conns SEC(".maps");

/* The network namespaces whose sockets are tracked; key 0 means every
 * namespace. Each hck-bpf adds the namespace it works on, so a host's
 * tracker does not fill up with other namespaces' sockets that no reconcile
 * of ours can ever clean. The value is userspace's: 0 until a full walk has
 * seeded the namespace, then 1 + the sockets lost to a full map by then. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hck_netns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HCK_CNT_MAX);
	__type(key, enum hck_counter); /* bpftool prints the counter names */
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hck_counters SEC(".maps");

/* Entries per TCP state (struct hck_state_counts): one per-CPU slot, a
 * lookup the verifier inlines and an add per transition. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hck_state_counts);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hck_states SEC(".maps");

/* The ring of recent kills (struct hck_recent_kill): a service writes it,
 * `top` and bpftool read it. No program touches it; it lives here to be
 * pinned with the tracker's maps. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HCK_RECENT_MAX);
	__type(key, __u32);
	__type(value, struct hck_recent_kill);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hck_recent SEC(".maps");

/* struct hck_wake records for a listening service. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 512 * 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hck_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hck_cfg);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hck_config SEC(".maps");

/* The listening service's timer, CLOCK_BOOTTIME ns: it walks the map by
 * then (U64_MAX: no timer armed, a sweep is running). A socket due earlier
 * is announced, and lowers it, so a burst of sockets costs one event.
 * Mapped into the service's memory: both sides read and write it with
 * single 8-byte accesses (the service's are atomic), no syscall, and no
 * update of hck_config ever overwrites it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hck_armed SEC(".maps");

/* Keep the enums in BTF so bpf2go can generate them. */
const enum hck_flag *_hck_flag __attribute__((unused));
const enum hck_counter *_hck_counter __attribute__((unused));
const struct hck_event *_hck_event __attribute__((unused));
const struct hck_wake *_hck_wake __attribute__((unused));
const struct hck_recent_kill *_hck_recent_kill __attribute__((unused));

static __always_inline void count(enum hck_counter idx)
{
	__u64 *v = bpf_map_lookup_elem(&hck_counters, &idx);

	if (v)
		*v += 1; /* per-CPU: no atomics needed */
}

static __always_inline void entered(int state)
{
	__u32 zero = 0;
	struct hck_state_counts *st = bpf_map_lookup_elem(&hck_states, &zero);

	if (st)
		st->entered[state & (HCK_NSTATES - 1)] += 1; /* per-CPU */
}

static __always_inline bool watched(__u32 netns)
{
	__u32 all = 0;

	return bpf_map_lookup_elem(&hck_netns, &netns) || bpf_map_lookup_elem(&hck_netns, &all);
}

/* A new entry's tuple and holder. */
static __always_inline void fill(struct hck_conn *c, const struct sock *sk)
{
	conn_common(c, &sk->__sk_common);
	/* skc_num is already 0 when the tracepoint reports X -> CLOSE (see
	 * kernel.h); inet_sport is not. The BTF pointer is typed struct sock:
	 * inet_sock fields beyond it need a probe read, so only then. */
	if (!c->sport)
		c->sport = __builtin_bswap16(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
	conn_holder(c, sk);
}

static __always_inline bool send(__u64 cookie, __u64 due)
{
	struct hck_wake *ev = bpf_ringbuf_reserve(&hck_events, sizeof(*ev), 0);

	if (!ev) {
		count(HCK_CNT_EVENT_LOST);
		return false;
	}
	ev->cookie = cookie;
	ev->due_ns = due;
	bpf_ringbuf_submit(ev, 0);
	count(HCK_CNT_EVENT_SENT);
	return true;
}

/* Whether the listening service sweeps namespace netns (hck_cfg.scope). */
static __always_inline bool in_scope(const struct hck_cfg *cfg, __u32 netns)
{
	__u32 i, n = cfg->nscope;

	if (!n)
		return true;
	for (i = 0; i < HCK_SCOPE_MAX; i++) {
		if (i >= n)
			break;
		if (cfg->scope[i] == netns)
			return true;
	}
	return false;
}

/* Tell a listening service that the socket cookie of namespace netns may
 * need a sweep at from (0: now) + the wake time of state, if that is before
 * the service's timer: that is the only socket it could miss, since its
 * next sweep walks the map anyway.
 *
 * The entry is written before armed is read. A sweep sets armed to U64_MAX
 * before it walks the map: an entry that still read the earlier timer was
 * written before that store, a syscall or more before the walk reads it.
 *
 * Lowering armed is a plain store, not a compare-and-swap: two CPUs racing
 * may leave the later of their deadlines there, but both announced theirs,
 * and the service arms for the earliest it hears of. armed only ever holds
 * a deadline the service will look by, so a socket due at or after it
 * needs no event. */
static __always_inline void announce(__u64 cookie, __u32 netns, __u8 state, __u64 from)
{
	__u32 zero = 0;
	struct hck_cfg *cfg = bpf_map_lookup_elem(&hck_config, &zero);
	__u64 *armed, wake, due;

	if (!cfg || !cfg->notify)
		return;
	wake = cfg->wake_ns[state & (HCK_NSTATES - 1)];
	if (!wake)
		return;
	armed = bpf_map_lookup_elem(&hck_armed, &zero);
	if (!armed)
		return;
	if (!from)
		from = bpf_ktime_get_boot_ns(); /* only with a service listening */
	due = from + wake;
	if (due >= *(volatile __u64 *)armed)
		return;
	/* Only now, for the few sockets due before the timer: */
	if (!in_scope(cfg, netns))
		return; /* another namespace's socket: not the service's to sweep */
	/* A lost event leaves armed as it was: the next socket tries again. */
	if (send(cookie, due))
		*(volatile __u64 *)armed = due;
}

/* The entry c, just written: due its state's wake time after its entry. */
static __always_inline void announce_entry(__u64 cookie, const struct hck_conn *c)
{
	announce(cookie, c->netns, c->state, c->entered_ns);
}

/* A socket the full map refused: tell a listening service once, so it
 * says so and walks (which drops dead entries) now, not at its backstop. */
static __always_inline void announce_overflow(void)
{
	__u32 zero = 0;
	struct hck_cfg *cfg = bpf_map_lookup_elem(&hck_config, &zero);

	if (!cfg || !cfg->notify || !cfg->notify_overflow)
		return;
	cfg->notify_overflow = 0;
	send(0, 0);
}

/* cur: the socket's entry, NULL when it has none (the caller looked it up,
 * or knows there is none to look up). */
static __always_inline void track(const struct sock *sk, __u64 cookie, __u8 state,
				  __u8 flags, __u64 now, struct hck_conn *cur)
{
	struct hck_conn c = {};
	int err; /* an int: map helpers return one before Linux 6.4 */

	/* A socket moving on between closing states keeps its entry: update
	 * it in place. A map update would allocate a new element and free the
	 * old one through RCU, several times the cost. */
	if (cur) {
		cur->entered_ns = now;
		cur->state = state;
		cur->flags = flags | (cur->flags & (HCK_F_TIMEWAIT | HCK_F_ORPHAN));
		conn_holder(cur, sk);
		count(HCK_CNT_TRACKED);
		announce_entry(cookie, cur);
		return;
	}
	fill(&c, sk);
	c.entered_ns = now;
	c.state = state;
	c.flags |= flags;
	err = bpf_map_update_elem(&hck_conns, &cookie, &c, BPF_NOEXIST);
	if (err == -EEXIST) /* seeded by userspace meanwhile */
		err = bpf_map_update_elem(&hck_conns, &cookie, &c, BPF_ANY);
	if (err) {
		if (err == -E2BIG) { /* full */
			count(HCK_CNT_OVERFLOW);
			announce_overflow();
		} else {
			count(HCK_CNT_UPDATE_ERROR);
		}
		return;
	}
	count(HCK_CNT_TRACKED);
	announce_entry(cookie, &c);
}

/* The cookie of a socket that has one already, 0 otherwise: read without
 * bpf_get_socket_cookie(), which makes one on the first request. */
static __always_inline __u64 known_cookie(const struct sock *sk)
{
	return sk->__sk_common.skc_cookie.counter;
}

/* Whether X -> CLOSE hands the socket over to a timewait socket (the
 * kernel's tcp_time_wait() then tcp_done()) rather than ending it:
 *   - a reset or an abort sets sk_err before tcp_done();
 *   - only CLOSING and FIN_WAIT2 go on to a timewait socket;
 *   - a FIN_WAIT2 socket still held by its process goes to TIME_WAIT only
 *     on the peer's FIN, and tcp_fin() marks RCV_SHUTDOWN before that.
 *     Without it, the process disconnected the socket (connect(AF_UNSPEC),
 *     tcp_disconnect(): no error is set before the transition) and it may
 *     connect again under the same cookie. */
static __always_inline bool timewait_next(const struct sock *sk, int oldstate, int newstate)
{
	if (newstate != TCP_CLOSE || sk->sk_err != 0)
		return false;
	if (oldstate == TCP_CLOSING)
		return true;
	if (oldstate != TCP_FIN_WAIT2)
		return false;
	return !sk->sk_socket || (sk->sk_shutdown & RCV_SHUTDOWN);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(hck_set_state, const struct sock *sk, int oldstate, int newstate)
{
	struct hck_conn *c = NULL;
	__u8 state = newstate, flags = 0;
	bool orphan_fin_wait2 = false;
	__u64 cookie;

	entered(newstate);
	/* Most transitions (SYN_SENT -> ESTABLISHED, LISTEN -> CLOSE...) are
	 * none of our business beyond that count: leave. */
	if (!closing(oldstate) && !closing(newstate)) {
		/* But a socket that leaves CLOSE for SYN_SENT (connect()) or
		 * LISTEN is in use again, and a closed socket may still have an
		 * entry: one we took for a timewait socket at FIN_WAIT2 ->
		 * CLOSE. connect(AF_UNSPEC) (tcp_disconnect()) makes that very
		 * transition and keeps the socket, its cookie and its bound
		 * port; the next connect() can bring back the same 4-tuple,
		 * ESTABLISHED under the same cookie. Drop the entry. A socket
		 * never given a cookie has no entry: no lookup. */
		if (oldstate == TCP_CLOSE && (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN) &&
		    sk->sk_protocol == IPPROTO_TCP) {
			cookie = known_cookie(sk);
			if (cookie && bpf_map_delete_elem(&hck_conns, &cookie) == 0)
				count(HCK_CNT_UNTRACKED);
		}
		return 0;
	}
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;

	if (closing(newstate)) {
		/* close() of a half-closed FIN_WAIT2 socket reports FIN_WAIT2 ->
		 * FIN_WAIT2 (tcp_close_state, Linux 6.18): not a new entry. */
		if (oldstate == newstate)
			flags = HCK_F_LOWER_BOUND;
	} else if (timewait_next(sk, oldstate, newstate)) {
		/* Leaving the closing states for a timewait socket with the
		 * same cookie, which the tracepoint never reports (Linux
		 * 6.18): all we see is FIN_WAIT2 -> CLOSE or CLOSING -> CLOSE
		 * on the full socket. This is an inference, not a sighting: a
		 * sweep confirms the state with the kernel before it destroys.
		 *
		 * CLOSING ends in TIME_WAIT. So does FIN_WAIT2 when the peer's
		 * FIN arrives while a process still holds the socket. An
		 * orphan in FIN_WAIT2 goes on as a FIN_WAIT2 timewait socket:
		 * same state, same entry time. */
		if (oldstate == TCP_CLOSING || sk->sk_socket) {
			state = TCP_TIME_WAIT;
			flags = HCK_F_TIMEWAIT;
			entered(TCP_TIME_WAIT);
		} else {
			state = TCP_FIN_WAIT2;
			flags = HCK_F_TIMEWAIT | HCK_F_LOWER_BOUND;
			orphan_fin_wait2 = true;
		}
	} else {
		/* Gone: forget it. Only a socket with a cookie can have an
		 * entry. */
		cookie = known_cookie(sk);
		if (cookie && bpf_map_delete_elem(&hck_conns, &cookie) == 0)
			count(HCK_CNT_UNTRACKED);
		return 0;
	}

	/* A socket already in a closing state may have an entry, made while
	 * its namespace was watched (namespaces leave the watched set only
	 * once they are gone): found, it needs no namespace check. Only a
	 * socket with a cookie can have one. A socket coming from another
	 * state has none: no lookup. */
	cookie = known_cookie(sk);
	if (cookie && closing(oldstate)) {
		c = bpf_map_lookup_elem(&hck_conns, &cookie);
		if (c) {
			if (oldstate == newstate)
				return 0;
			if (orphan_fin_wait2) {
				/* Same state, same entry time; but from now on
				 * the peer's FIN may take it to TIME_WAIT with no
				 * event: it may be hung as that from now + the
				 * TIME_WAIT threshold. (Announcing FIN_WAIT2
				 * entries at TIME_WAIT's threshold covers only
				 * sockets closed by then.) */
				c->flags |= HCK_F_TIMEWAIT;
				announce(cookie, c->netns, TCP_TIME_WAIT, 0);
				return 0;
			}
			track(sk, cookie, state, flags, bpf_ktime_get_boot_ns(), c);
			return 0;
		}
	}
	if (!watched(sk->__sk_common.skc_net.net->ns.inum))
		return 0;
	if (!cookie)
		cookie = bpf_get_socket_cookie((void *)sk);
	track(sk, cookie, state, flags, bpf_ktime_get_boot_ns(), NULL);
	return 0;
}
