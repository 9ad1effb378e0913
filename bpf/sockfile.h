/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What the sockfile programs share (sockfile.bpf.c, and sockfile_compat.bpf.c
 * for kernels without bpf_iter_num or bpf_rdonly_cast): the batch they
 * answer, and the tuple a lookup of one of its sockets asks for. */
#ifndef HCK_SOCKFILE_H
#define HCK_SOCKFILE_H

/* Keep the record type in BTF so bpf2go can generate it. */
const struct hck_sockfile *_hck_sockfile __attribute__((unused));

/* One batch: kill runs the program again for more. Pinned (in the kill's
 * own pin dir, beside the program), used under that directory's lock. */
#define HCK_SOCKFILES 4096

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HCK_SOCKFILES);
	__type(key, __u32);
	__type(value, struct hck_sockfile);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hck_sockfiles SEC(".maps");

/* include/uapi/linux/bpf.h: the tuple of an incoming packet. */
struct bpf_sock_tuple {
	union {
		struct {
			__be32 saddr;
			__be32 daddr;
			__be16 sport;
			__be16 dport;
		} ipv4;
		struct {
			__be32 saddr[4];
			__be32 daddr[4];
			__be16 sport;
			__be16 dport;
		} ipv6;
	};
};

#define BPF_F_CURRENT_NETNS (-1L)

/* The tuple to look socket e up by, as a packet to it would carry it: from
 * the remote end to the local one. Returns the tuple's size. */
static __always_inline __u32 sockfile_tuple(const struct hck_sockfile *e, struct bpf_sock_tuple *t)
{
	if (e->family == AF_INET) {
		__builtin_memcpy(&t->ipv4.saddr, e->daddr, 4);
		__builtin_memcpy(&t->ipv4.daddr, e->saddr, 4);
		t->ipv4.sport = __builtin_bswap16(e->dport);
		t->ipv4.dport = __builtin_bswap16(e->sport);
		return sizeof(t->ipv4);
	}
	__builtin_memcpy(t->ipv6.saddr, e->daddr, 16);
	__builtin_memcpy(t->ipv6.daddr, e->saddr, 16);
	t->ipv6.sport = __builtin_bswap16(e->dport);
	t->ipv6.dport = __builtin_bswap16(e->sport);
	return sizeof(t->ipv6);
}

#endif /* HCK_SOCKFILE_H */
