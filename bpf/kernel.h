/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The few kernel definitions hck-bpf reads, as minimal CO-RE types: libbpf and
 * cilium/ebpf relocate every field against the running kernel's BTF, so one
 * little-endian object serves amd64 and arm64 without a 3 MB vmlinux.h. */
#ifndef HCK_KERNEL_H
#define HCK_KERNEL_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
	BPF_F_NO_PREALLOC = 1,
	BPF_F_MMAPABLE = 1 << 10,
};

/* include/uapi/asm-generic/errno-base.h: helpers return them negated. */
#define E2BIG 7
#define EEXIST 17

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* include/net/tcp_states.h */
enum {
	TCP_ESTABLISHED = 1,
	TCP_SYN_SENT,
	TCP_SYN_RECV,
	TCP_FIN_WAIT1,
	TCP_FIN_WAIT2,
	TCP_TIME_WAIT,
	TCP_CLOSE,
	TCP_CLOSE_WAIT,
	TCP_LAST_ACK,
	TCP_LISTEN,
	TCP_CLOSING,
	TCP_NEW_SYN_RECV,
};

struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
} __attribute__((preserve_access_index));

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} __attribute__((preserve_access_index)) possible_net_t;

typedef struct {
	__s64 counter;
} __attribute__((preserve_access_index)) atomic64_t;

/* In the kernel the address and port pairs sit in anonymous unions; CO-RE
 * finds members of anonymous structs by name, so they are flat here. */
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	int skc_bound_dev_if;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	atomic64_t skc_cookie; /* 0 until someone asks for the cookie */
	unsigned long skc_flags; /* enum sock_flags bits; sk_flags in C */
} __attribute__((preserve_access_index));

/* enum sock_flags */
#define SOCK_DEAD 0

/* sk_shutdown bits (include/net/sock.h) */
#define RCV_SHUTDOWN 1
#define SEND_SHUTDOWN 2

struct sock {
	struct sock_common __sk_common;
	int sk_err;
	struct socket *sk_socket;
	__u8 sk_shutdown; /* RCV_SHUTDOWN | SEND_SHUTDOWN */
	__u16 sk_protocol; /* a plain u16 since 5.6; tp_btf needs 5.5 and the
			    * socket cookie helper 5.12, so no bitfield flavour */
} __attribute__((preserve_access_index));

/* The local port as the socket was bound: unlike skc_num, it survives
 * inet_put_port(), which zeroes skc_num just before the tracepoint reports
 * X -> CLOSE (tcp_set_state, Linux 6.18). */
struct inet_sock {
	struct sock sk;
	__be16 inet_sport;
} __attribute__((preserve_access_index));

struct file {
	void *private_data; /* a socket file's struct socket */
} __attribute__((preserve_access_index));

struct socket {
	struct sock *sk;
	struct file *file;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	char comm[16];
	struct task_struct *group_leader;
	struct files_struct *files;
} __attribute__((preserve_access_index));

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
} __attribute__((preserve_access_index));

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
} __attribute__((preserve_access_index));

struct timer_list {
	unsigned long expires;
} __attribute__((preserve_access_index));

struct inet_timewait_sock {
	struct sock_common __tw_common;
	unsigned char tw_substate;
	struct timer_list tw_timer;
} __attribute__((preserve_access_index));

struct tcp_timewait_sock {
	struct inet_timewait_sock tw_sk;
} __attribute__((preserve_access_index));

/* Open-coded number iterator (kfuncs bpf_iter_num_*, Linux 6.4): a loop the
 * verifier checks once instead of once per iteration. */
struct bpf_iter_num {
	__u64 __opaque[1];
} __attribute__((aligned(8)));

#endif /* HCK_KERNEL_H */
