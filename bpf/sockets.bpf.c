//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The sockets iterator: walks every TCP socket of the opener's network
 * namespace (full, request and timewait) and reports the ones in closing
 * states. The tracepoint never fires for timewait sockets and never saw the
 * sockets that predate the tracker: this is how hck-bpf learns about both,
 * and how it notices entries whose socket died without an event. */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "hck.h"
#include "states.h"
#include "sock.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The kernel's CONFIG_HZ, set by userspace from the kernel config before
 * load: 0 when unknown, and timewait ages are then lower bounds. (A weak
 * __kconfig extern would do, but cilium/ebpf refuses weak bindings.) */
const volatile __u32 hck_hz = 0;

#define NSEC_PER_SEC 1000000000ULL
/* include/net/tcp.h: a TIME_WAIT timer is always armed for 60 s. */
#define TCP_TIMEWAIT_LEN_S 60

SEC("iter/tcp")
int hck_sockets(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct tcp_timewait_sock *tw;
	struct hck_event rec = {};
	__u32 hz = hck_hz;
	__u64 now_j, expires, entry_j;
	int state;

	if (!skc)
		return 0;
	state = skc->skc_state;
	if (!closing(state))
		return 0;

	rec.cookie = bpf_get_socket_cookie(skc);
	conn_common(&rec.conn, skc);
	rec.conn.state = state;
	/* entered_ns 0: unknown, the socket is as old as its first sighting. */

	if (state != TCP_TIME_WAIT) {
		/* A full socket (request sockets are never in a closing state):
		 * as a tcp_sock, its struct sock fields are direct loads. */
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);

		if (tp)
			conn_holder(&rec.conn, (const struct sock *)tp);
	} else {
		/* A timewait socket: skc_state says TIME_WAIT, tw_substate says
		 * whether it is TIME_WAIT or an orphan still in FIN_WAIT2. */
		tw = bpf_skc_to_tcp_timewait_sock(skc);
		if (!tw)
			return 0;
		rec.conn.state = tw->tw_sk.tw_substate;
		rec.conn.flags = HCK_F_TIMEWAIT;
		/* TIME_WAIT's timer runs exactly TCP_TIMEWAIT_LEN from entry, so
		 * the entry time is expires - 60 s, to a jiffy. FIN_WAIT2's timer
		 * depends on tcp_fin_timeout or TCP_LINGER2: unknown here. */
		if (rec.conn.state == TCP_TIME_WAIT && hz) {
			now_j = bpf_jiffies64();
			expires = tw->tw_sk.tw_timer.expires;
			entry_j = expires - (__u64)TCP_TIMEWAIT_LEN_S * hz;
			if ((__s64)(now_j - entry_j) >= 0)
				rec.conn.entered_ns = bpf_ktime_get_boot_ns() -
						      (now_j - entry_j) * (NSEC_PER_SEC / hz);
		}
	}
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}
