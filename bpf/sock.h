/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Reading a socket into struct hck_conn, one way for every program: the
 * tracker (a full socket, at a transition) and the sockets iterator (full
 * and timewait sockets, on a walk). Both get a BTF pointer from the kernel,
 * so every field is a direct, CO-RE relocated load: no probe reads. */
#ifndef HCK_SOCK_H
#define HCK_SOCK_H

/* The fields every kind of socket has in its struct sock_common: family,
 * addresses, ports, network namespace and bound device. The local port is
 * skc_num, which a caller that knows better overrides (see the tracker). */
static __always_inline void conn_common(struct hck_conn *c, const struct sock_common *skc)
{
	c->family = skc->skc_family;
	if (c->family == AF_INET6) {
		__builtin_memcpy(c->saddr, &skc->skc_v6_rcv_saddr, sizeof(c->saddr));
		__builtin_memcpy(c->daddr, &skc->skc_v6_daddr, sizeof(c->daddr));
	} else {
		*(__be32 *)c->saddr = skc->skc_rcv_saddr;
		*(__be32 *)c->daddr = skc->skc_daddr;
	}
	c->sport = skc->skc_num;
	c->dport = __builtin_bswap16(skc->skc_dport);
	c->netns = skc->skc_net.net->ns.inum;
	c->ifindex = skc->skc_bound_dev_if;
}

/* Who may hold a full socket: its open file while it has one (an entry
 * keeps it once the socket loses it, so a closed socket's stale address
 * stays: the owners iterator checks every match), and whether the process
 * closed it. sk must be a BTF pointer to a full socket (struct sock or one
 * that starts with it, such as what bpf_skc_to_tcp_sock() returns). */
static __always_inline void conn_holder(struct hck_conn *c, const struct sock *sk)
{
	struct socket *so = sk->sk_socket;

	if (so)
		c->file = (__u64)so->file;
	if (sk->__sk_common.skc_flags & (1UL << SOCK_DEAD))
		c->flags |= HCK_F_ORPHAN;
}

#endif /* HCK_SOCK_H */
