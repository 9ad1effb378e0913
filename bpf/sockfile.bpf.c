//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The sockfile program: for each socket of hck_sockfiles (a tuple and a
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

extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __ksym;
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

SEC("tc")
int hck_find_files(struct __sk_buff *skb)
{
	struct bpf_iter_num it;
	int *i;

	bpf_iter_num_new(&it, 0, HCK_SOCKFILES);
	while ((i = bpf_iter_num_next(&it))) {
		__u32 k = *i;
		struct hck_sockfile *e = bpf_map_lookup_elem(&hck_sockfiles, &k);
		struct bpf_sock_tuple t = {};
		struct bpf_sock *sk;
		struct sock *s;
		struct socket *so;
		__u32 size;

		if (!e || !e->family)
			break;
		size = sockfile_tuple(e, &t);
		sk = bpf_sk_lookup_tcp(skb, &t, size, BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			continue;
		s = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct sock));
		if (s->__sk_common.skc_cookie.counter == e->cookie) {
			so = s->sk_socket;
			e->found = 1;
			e->file = so ? (__u64)so->file : 0;
		}
		bpf_sk_release(sk);
	}
	bpf_iter_num_destroy(&it);
	return 0; /* TC_ACT_OK */
}
