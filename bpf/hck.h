/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Every struct that crosses between the BPF programs and Go. bpf2go generates
 * the Go side from these (-type), so nothing is copied by hand. No bitfields,
 * no packing: fields are laid out so the natural alignment leaves no holes. */
#ifndef HCK_H
#define HCK_H

/* hck_conn.flags */
enum hck_flag {
	/* entered_ns is when hck-bpf first saw the socket, not when it entered
	 * its state: the age is a lower bound. */
	HCK_F_LOWER_BOUND = 1,
	/* the kernel keeps the socket as a timewait socket (TIME_WAIT, or
	 * FIN_WAIT2 after the process closed it). */
	HCK_F_TIMEWAIT = 2,
	/* the process closed the socket (SOCK_DEAD): no process holds it, and
	 * none ever will again. */
	HCK_F_ORPHAN = 4,
};

/* One tracked socket, the value of hck_conns (key: the u64 socket cookie). */
struct hck_conn {
	__u64 entered_ns; /* CLOCK_BOOTTIME when it entered state */
	__u8 saddr[16];   /* local address; IPv4 in the first 4 bytes */
	__u8 daddr[16];   /* remote address */
	__u16 sport;      /* local port, host order */
	__u16 dport;      /* remote port, host order */
	__u32 netns;      /* network namespace inode */
	__u32 ifindex;    /* bound device (IPv6 link-local lookups) */
	__u16 family;     /* AF_INET or AF_INET6 */
	__u8 state;       /* TCP state, kernel numbering */
	__u8 flags;       /* enum hck_flag */
	/* The socket's open file (a kernel address; 0 when it has none, such
	 * as a connection not yet accepted): how the owners iterator recognises
	 * it in a process's file table without reading every open file. */
	__u64 file;
};

/* A tracked socket as the sockets iterator reports it (cookie and entry;
 * entered_ns 0 when no kernel timer tells the entry time). */
struct hck_event {
	__u64 cookie;
	struct hck_conn conn;
};

/* One record of hck_events, the ring buffer a listening service reads: a
 * socket that entered a closing state and is due before the service's
 * armed timer (hck_armed), which the tracker lowered to due_ns. Cookie 0
 * (no socket has it) says instead that hck_conns was full: a socket went
 * untracked; due_ns is 0 then. */
struct hck_wake {
	__u64 cookie;
	__u64 due_ns; /* CLOCK_BOOTTIME by which a sweep must look at it */
};

/* Indexes of the per-CPU hck_counters array. Nothing is dropped silently. */
enum hck_counter {
	HCK_CNT_TRACKED,      /* entries written (socket entered a closing state) */
	HCK_CNT_UNTRACKED,    /* entries removed (socket left the closing states) */
	HCK_CNT_OVERFLOW,     /* hck_conns full: the socket is not tracked */
	HCK_CNT_UPDATE_ERROR, /* any other map update failure */
	HCK_CNT_EVENT_LOST,   /* hck_events full while a service listens */
	HCK_CNT_EVENT_SENT,   /* records written to hck_events */
	HCK_CNT_MAX,
};

/* hck_cfg.wake_ns is indexed by TCP state (1 to 12, kernel numbering). */
#define HCK_NSTATES 16

/* The single entry of the per-CPU hck_states array: per TCP state (kernel
 * numbering), how many times a socket entered it, on this CPU, since the
 * tracker was attached. Every transition the tracepoint reports counts,
 * whatever the namespace; a full socket that becomes a timewait socket
 * counts as CLOSE (what the tracepoint says) and as TIME_WAIT when the
 * tracker infers it went there. Request sockets (NEW_SYN_RECV) and timewait
 * sockets have no transitions. `top` turns these into rates. */
struct hck_state_counts {
	__u64 entered[HCK_NSTATES];
};
/* The most namespaces hck_cfg.scope names one by one. */
#define HCK_SCOPE_MAX 16

/* The single entry of the hck_config map, written by a service. */
struct hck_cfg {
	/* Per TCP state, how long after a socket enters it a sweep may have to
	 * act on it: the state's smallest threshold (for FIN_WAIT2, TIME_WAIT's
	 * too when smaller: such a socket may go on to TIME_WAIT as a timewait
	 * orphan, which no transition reports). 0: never, no event. */
	__u64 wake_ns[HCK_NSTATES];
	__u32 notify; /* a service consumes hck_events */
	/* The service wants to hear of the next socket refused by a full
	 * hck_conns: the tracker sends one event (cookie 0) and clears this;
	 * the service sets it again once it has dealt with it. */
	__u32 notify_overflow;
	/* The service's scope: only sockets of the network namespaces (inodes)
	 * scope[0 .. nscope) can be due before its timer; nscope 0: those of
	 * every watched namespace (a service covering every namespace, or more
	 * than HCK_SCOPE_MAX: then a socket of a namespace another hck-bpf
	 * watches may wake it for nothing, never the reverse). */
	__u32 nscope;
	__u32 _pad;
	__u32 scope[HCK_SCOPE_MAX];
};

/* hck_owned: a tracked socket seen open in a process's file table. The
 * owners iterator writes these instead of printing them (an iterator may
 * print at most 32 KiB per process, and one process can hold thousands of
 * hung sockets); a sweep reads those seen since its own walk began. */
struct hck_owner_key {
	__u64 cookie;
	__u32 pid; /* thread group id: what ps calls the pid */
	__u32 _pad;
};

struct hck_owner {
	__u64 seen_ns; /* CLOCK_BOOTTIME of the walk that saw it */
	__u32 fd;
	__u32 _pad;
	char comm[16];
};

/* hck_kill.state: what the destroy iterator did with a socket. */
enum hck_kill_state {
	HCK_KILL_PENDING = 0,  /* not seen by the walk (yet) */
	HCK_KILL_DONE = 1,     /* bpf_sock_destroy() was called: see ret */
	HCK_KILL_NOT_FULL = 2, /* timewait or request socket: the kfunc cannot
				* destroy it, netlink SOCK_DESTROY can */
	HCK_KILL_CHANGED = 3,  /* not in the state userspace named: left alone */
};

/* One socket to destroy, the value of hck_kills (key: the socket cookie).
 * Userspace writes netns, want and a zero state; the destroy iterator fills
 * in state, ret and, when the socket is not in want, seen. */
struct hck_kill {
	__u32 netns; /* the socket's network namespace inode, checked too */
	__s32 ret;   /* bpf_sock_destroy()'s result: 0 or -errno */
	__u32 state; /* enum hck_kill_state */
	__u8 want;   /* the TCP state the socket must be in to be destroyed */
	__u8 seen;   /* the TCP state it was found in (HCK_KILL_CHANGED) */
	__u16 _pad;
};

/* One entry of hck_sockfiles, the sockfile program's list: a socket a kill
 * wants the owners of, named by tuple and cookie (userspace fills these in,
 * with family 0 after the last), and the address of its open file, which
 * the owners iterator looks for in file tables (the program fills these
 * in). An IPv4-mapped IPv6 connection is given as IPv4: that is how the
 * kernel's lookup finds it. */
struct hck_sockfile {
	__u64 cookie;   /* in */
	__u64 file;     /* out: 0 when the socket has no open file */
	__u8 saddr[16]; /* in: local address; IPv4 in the first 4 bytes */
	__u8 daddr[16]; /* in: remote address */
	__u16 sport;    /* in: local port, host order */
	__u16 dport;    /* in: remote port, host order */
	__u16 family;   /* in: AF_INET or AF_INET6; 0 ends the list */
	__u16 found;    /* out: 1 when the socket was found, its cookie checked */
};

/* One slot of hck_recent, the ring of recent kills a service publishes
 * for `top`: slot seq % HCK_RECENT_MAX holds kill number seq (from 1; 0:
 * an empty slot). Written by userspace only, read by `top` and bpftool. */
#define HCK_RECENT_MAX 128
struct hck_recent_kill {
	__u64 seq;
	__u64 at_ns;   /* CLOCK_REALTIME of the destroy */
	__u64 cookie;
	__u64 age_ns;  /* its age in the state when destroyed */
	struct hck_conn conn;
	__u32 pid;     /* an owner, 0 when none is known */
	__u32 _pad;
	char comm[16]; /* that owner's name */
	char rule[32]; /* the config rule that decided, "" for the flags' */
	char reason[128]; /* the verdict's reason line, cut to fit */
};

#endif /* HCK_H */
