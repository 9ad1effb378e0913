//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The owners iterator for kernels without bpf_iter_num (open-coded
 * iterators, Linux 6.4): same maps, same records as owners.bpf.c, which
 * internal/owners uses wherever the kernel has that kfunc.
 *
 * The same walk as owners.bpf.c, each file table read as an array of
 * pointers a chunk per probe read, with the loops written as bpf_loop()
 * callbacks (Linux 5.17), which the verifier checks once each, as it does
 * bpf_iter_num loops. Measured against iter/task_file (one program call per
 * open file, Linux 5.8; the file's address looked up in hck_want): for the
 * owners of 1,200 hung sockets among 60,000 open files, this walk costs
 * about what owners.bpf.c does (6.8 ms of program time, 10 ms a walk, on a
 * loaded 2-core host), iter/task_file 15 ms of program time and 80-110 ms a
 * walk: the kernel takes a reference on every open file to show it. */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "hck.h"
#include "owners.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* One process's walk, shared by the callbacks (their context). */
struct scan {
	__u64 fds;
	__u32 max;
	__u32 first;
	__u32 n;
	__u32 tgid;
	__u32 failed;
	__u32 _pad;
	char comm[16];
};

/* Slot j of the chunk in hck_fd_chunk: a file asked about is recorded. */
static long scan_slot(__u32 j, struct scan *s)
{
	struct hck_owner_key key = {};
	struct hck_owner rec = {};
	struct fd_chunk *buf;
	__u32 zero = 0;
	__u64 f, *want;

	buf = bpf_map_lookup_elem(&hck_fd_chunk, &zero);
	if (!buf)
		return 1;
	f = buf->file[j & (FD_CHUNK - 1)];
	if (!f)
		return 0;
	want = bpf_map_lookup_elem(&hck_want, &f);
	if (!want || file_cookie(f) != *want)
		return 0;
	key.cookie = *want;
	key.pid = s->tgid;
	rec.seen_ns = bpf_ktime_get_boot_ns();
	rec.fd = s->first + j;
	__builtin_memcpy(rec.comm, s->comm, sizeof(rec.comm));
	if (bpf_map_update_elem(&hck_owned, &key, &rec, BPF_ANY))
		s->failed = 1;
	return 0;
}

/* Chunk i of the table: read into hck_fd_chunk, then its slots. */
static long scan_chunk(__u32 i, struct scan *s)
{
	struct fd_chunk *buf;
	__u32 zero = 0, n;

	s->first = i * FD_CHUNK;
	if (s->first >= s->max)
		return 1;
	n = s->max - s->first;
	if (n > FD_CHUNK)
		n = FD_CHUNK;
	buf = bpf_map_lookup_elem(&hck_fd_chunk, &zero);
	if (!buf)
		return 1;
	if (bpf_probe_read_kernel(buf->file, n * sizeof(__u64),
				  (void *)(s->fds + (__u64)s->first * sizeof(__u64))))
		return 0;
	bpf_loop(n, scan_slot, s, 0);
	return 0;
}

SEC("iter/task")
int hck_owners_compat(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct files_struct *files;
	struct fdtable *fdt;
	struct scan s = {};

	if (!task)
		return 0;
	files = task->files;
	if (!files)
		return 0;
	/* Threads share their leader's table: scan it once. */
	if (task->pid != task->tgid && task->group_leader->files == files)
		return 0;
	fdt = files->fdt;
	if (!fdt)
		return 0;
	s.max = fdt->max_fds;
	s.fds = (__u64)fdt->fd;
	if (!s.fds)
		return 0;
	s.tgid = task->tgid;
	__builtin_memcpy(s.comm, task->comm, sizeof(s.comm));
	bpf_loop((s.max + FD_CHUNK - 1) / FD_CHUNK, scan_chunk, &s, 0);
	/* As owners.bpf.c: a process some of whose owners could not be
	 * recorded (hck_owned full). */
	if (s.failed)
		bpf_seq_write(ctx->meta->seq, &s.failed, sizeof(s.failed));
	return 0;
}
