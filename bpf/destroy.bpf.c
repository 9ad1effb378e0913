//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The destroy iterator, the fallback for kernels built without
 * CONFIG_INET_DIAG_DESTROY (SOCK_DESTROY answers EOPNOTSUPP there): walks
 * every TCP socket of the opener's network namespace and destroys, with the
 * bpf_sock_destroy() kfunc, the full sockets whose cookie userspace put in
 * hck_kills, in the state named there. Timewait and request sockets, which
 * the kfunc cannot destroy, are marked as such. Where SOCK_DESTROY works it
 * is faster: the walk visits every socket of the namespace. */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "hck.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* net/core/filter.c, Linux >= 6.5; callable from iter/tcp and iter/udp,
 * which hold the socket's lock while the program runs. It returns
 * -EOPNOTSUPP for anything but TCP and UDP full sockets. */
extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/* The sockets to destroy: cookie -> struct hck_kill. Not pinned: each
 * Destroyer has its own, filled and emptied around one walk. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct hck_kill);
} hck_kills SEC(".maps");

/* Keep the types in BTF so bpf2go can generate them. */
const struct hck_kill *_hck_kill __attribute__((unused));
const enum hck_kill_state *_hck_kill_state __attribute__((unused));

SEC("iter/tcp")
int hck_destroy(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct hck_kill *k;
	__u64 cookie;
	int state;

	if (!skc)
		return 0;
	cookie = bpf_get_socket_cookie(skc);
	k = bpf_map_lookup_elem(&hck_kills, &cookie);
	/* A socket already handled is shown again when its record overflowed
	 * the seq buffer; this program writes none, but never destroy twice. */
	if (!k || k->state != HCK_KILL_PENDING)
		return 0;
	/* Cookies are unique per boot; the namespace check only guards against
	 * a walk opened in another namespace than the caller meant. */
	if (skc->skc_net.net->ns.inum != k->netns)
		return 0;
	state = skc->skc_state;
	if (state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV) {
		k->state = HCK_KILL_NOT_FULL;
		return 0;
	}
	/* A cookie names a socket, not a connection: one that connected again
	 * under it is not the socket userspace judged. The walk holds the
	 * socket's lock, so the state cannot change before the kfunc runs. */
	if (state != k->want) {
		k->state = HCK_KILL_CHANGED;
		k->seen = state;
		return 0;
	}
	k->ret = bpf_sock_destroy(skc);
	k->state = HCK_KILL_DONE;
	return 0;
}
