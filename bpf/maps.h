/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The socket map, shared by every program: the tracker writes it, the
 * iterators read it. */
#ifndef HCK_MAPS_H
#define HCK_MAPS_H

/* Sized from userspace (--map-size). No preallocation: memory follows the
 * sockets really tracked, and a full map fails the update (counted) instead
 * of evicting a socket whose age we know. Pinned by name so every hck-bpf
 * process, and bpftool, sees the same entries. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, struct hck_conn);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hck_conns SEC(".maps");

#endif /* HCK_MAPS_H */
