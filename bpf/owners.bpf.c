//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The owners iterator: walks every open file of every process once and
 * reports the ones that are tracked sockets, so a sweep learns pid and comm
 * without reading /proc text. */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "hck.h"
#include "states.h"
#include "maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Keep the record type in BTF so bpf2go can generate it. */
const struct hck_owner *_hck_owner __attribute__((unused));

SEC("iter/task_file")
int hck_owners(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct hck_owner rec = {};
	struct socket *sock;
	struct sock *sk;

	if (!task || !file)
		return 0;
	sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	sk = sock->sk;
	if (!sk)
		return 0;
	/* Most open sockets are ESTABLISHED: leave before hashing anything. */
	if (!closing(sk->__sk_common.skc_state) || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	rec.cookie = bpf_get_socket_cookie(sk);
	/* Only sockets the tracker holds: a sweep needs owners of candidates,
	 * not of every socket on the host. */
	if (!bpf_map_lookup_elem(&hck_conns, &rec.cookie))
		return 0;
	rec.pid = task->tgid;
	rec.fd = ctx->fd;
	__builtin_memcpy(rec.comm, task->comm, sizeof(rec.comm));
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}
