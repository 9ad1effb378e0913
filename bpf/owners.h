/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What the owners programs share (owners.bpf.c, and owners_compat.bpf.c for
 * kernels without bpf_iter_num): the two pinned maps, which both programs
 * read and write under the same pins, and how a match is recorded. */
#ifndef HCK_OWNERS_H
#define HCK_OWNERS_H

/* Keep the record types in BTF so bpf2go can generate them. */
const struct hck_owner *_hck_owner __attribute__((unused));
const struct hck_owner_key *_hck_owner_key __attribute__((unused));

/* What the walks saw: (cookie, pid) -> when, fd, comm. Pruned by reconcile
 * when the socket is no longer tracked. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 262144);
	__type(key, struct hck_owner_key);
	__type(value, struct hck_owner);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hck_owned SEC(".maps");

/* The files a sweep wants the owners of: file address -> the cookie of the
 * socket it was recorded for (hck_conn.file). A match is checked against
 * that cookie, so an address reused by another file never matches. Written
 * by userspace before a walk; entries are pruned when their socket is no
 * longer tracked. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hck_want SEC(".maps");

/* A process's file table is read FD_CHUNK pointers at a time into this
 * per-CPU scratch (too big for the stack). Not pinned: each program has its
 * own. */
#define FD_CHUNK 512

struct fd_chunk {
	__u64 file[FD_CHUNK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fd_chunk);
} hck_fd_chunk SEC(".maps");

/* The cookie of the socket behind an open file, or 0. */
static __always_inline __u64 file_cookie(__u64 f)
{
	struct socket *so = BPF_CORE_READ((struct file *)f, private_data);
	struct sock *sk = BPF_CORE_READ(so, sk);

	return BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
}

#endif /* HCK_OWNERS_H */
