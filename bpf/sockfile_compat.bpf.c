//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The sockfile program for kernels without bpf_iter_num (Linux 6.4) or
 * bpf_rdonly_cast (6.2): sockfile.bpf.c's lookups in a bpf_loop() callback
 * (5.17), the socket read through bpf_skc_to_tcp_sock() (5.9).
 *
 * As sockfile.bpf.c: for each socket of hck_sockfiles (a tuple and a
 * cookie, from a sock_diag dump), finds the socket in the caller's network
 * namespace with the kernel's own hash lookup (bpf_sk_lookup_tcp) and
 * records the address of its open file. With it the owners iterator finds
 * the socket's processes by comparing file table slots, as it does for a
 * sweep, instead of reading every open file of the host for its inode.
 *
 * A tc program, never attached: userspace runs it once per batch with
 * BPF_PROG_TEST_RUN, on a thread in the namespace whose sockets it wants
 * (the test run's packet belongs to that namespace's loopback device, and
 * BPF_F_CURRENT_NETNS looks up there). */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "hck.h"
#include "sockfile.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* What a lookup callback needs: the packet the lookups belong to. */
struct find {
	struct __sk_buff *skb;
};

static long find_one(__u32 i, struct find *ctx)
{
	__u32 k = i;
	struct hck_sockfile *e = bpf_map_lookup_elem(&hck_sockfiles, &k);
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	struct tcp_sock *tp;
	const struct sock *s;
	struct socket *so;
	__u32 size;

	if (!e || !e->family)
		return 1;
	size = sockfile_tuple(e, &t);
	sk = bpf_sk_lookup_tcp(ctx->skb, &t, size, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (tp) {
		s = (const struct sock *)tp;
		if (s->__sk_common.skc_cookie.counter == e->cookie) {
			so = s->sk_socket;
			e->found = 1;
			e->file = so ? (__u64)so->file : 0;
		}
	}
	bpf_sk_release(sk);
	return 0;
}

SEC("tc")
int hck_find_files_compat(struct __sk_buff *skb)
{
	struct find ctx = {.skb = skb};

	bpf_loop(HCK_SOCKFILES, find_one, &ctx, 0);
	return 0; /* TC_ACT_OK */
}
