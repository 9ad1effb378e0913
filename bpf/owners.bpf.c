//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The owners iterator: for every process, scans its file descriptor table
 * for the open files of the sockets a sweep asked about (hck_want), and
 * records pid, fd and comm for each one it finds in hck_owned.
 *
 * It reads each table as an array of pointers, a few KiB per probe read,
 * and looks every pointer up in a small hash: it never touches the other
 * open files themselves. Following file -> socket -> sock for every open
 * file, as iter/task_file with bpf_sock_from_file() does, costs several
 * cache misses per file and made a sweep cost O(open files on the host). */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "hck.h"
#include "owners.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __ksym;

SEC("iter/task")
int hck_owners(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct bpf_iter_num chunks, slots;
	struct files_struct *files;
	struct hck_owner_key key = {};
	struct hck_owner rec = {};
	__u32 failed = 0;
	struct fd_chunk *buf;
	struct fdtable *fdt;
	__u32 zero = 0, max, first, n, j;
	__u64 fds, f, *want;
	int *i, *k;

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
	max = fdt->max_fds;
	fds = (__u64)fdt->fd;
	buf = bpf_map_lookup_elem(&hck_fd_chunk, &zero);
	if (!buf || !fds)
		return 0;

	bpf_iter_num_new(&chunks, 0, (max + FD_CHUNK - 1) / FD_CHUNK);
	while ((i = bpf_iter_num_next(&chunks))) {
		first = (__u32)*i * FD_CHUNK;
		if (first >= max)
			break;
		n = max - first;
		if (n > FD_CHUNK)
			n = FD_CHUNK;
		if (bpf_probe_read_kernel(buf->file, n * sizeof(__u64),
					  (void *)(fds + (__u64)first * sizeof(__u64))))
			continue;
		bpf_iter_num_new(&slots, 0, n);
		while ((k = bpf_iter_num_next(&slots))) {
			j = *k;
			if (j >= FD_CHUNK)
				break;
			f = buf->file[j];
			if (!f)
				continue;
			want = bpf_map_lookup_elem(&hck_want, &f);
			if (!want || file_cookie(f) != *want)
				continue;
			key.cookie = *want;
			key.pid = task->tgid;
			rec.seen_ns = bpf_ktime_get_boot_ns();
			rec.fd = first + j;
			__builtin_memcpy(rec.comm, task->comm, sizeof(rec.comm));
			if (bpf_map_update_elem(&hck_owned, &key, &rec, BPF_ANY))
				failed = 1;
		}
		bpf_iter_num_destroy(&slots);
	}
	bpf_iter_num_destroy(&chunks);
	/* The only output: a process some of whose owners could not be
	 * recorded (hck_owned full). A sweep that reads any refuses to act.
	 * (A counter incremented inside the loops above made the 6.18
	 * verifier fail with EFAULT; a flag does not.) */
	if (failed)
		bpf_seq_write(ctx->meta->seq, &failed, sizeof(failed));
	return 0;
}
