// Package bpf holds hck-bpf's BPF programs and their generated Go bindings.
//
// The C sources are compiled by bpf2go with one pinned clang (see the
// Makefile's generate target); the generated *_bpfel.go and *_bpfel.o files
// are committed, so building hck-bpf needs no clang.
package bpf

//go:generate go tool bpf2go -tags linux -target bpfel -type hck_conn -type hck_event -type hck_wake -type hck_counter -type hck_flag -type hck_cfg -type hck_state_counts -type hck_recent_kill Tracker tracker.bpf.c
//go:generate go tool bpf2go -tags linux -target bpfel -type hck_owner -type hck_owner_key Owners owners.bpf.c
//go:generate go tool bpf2go -tags linux -target bpfel OwnersCompat owners_compat.bpf.c
//go:generate go tool bpf2go -tags linux -target bpfel Sockets sockets.bpf.c
//go:generate go tool bpf2go -tags linux -target bpfel -type hck_kill -type hck_kill_state Destroy destroy.bpf.c
//go:generate go tool bpf2go -tags linux -target bpfel -type hck_sockfile Sockfile sockfile.bpf.c
//go:generate go tool bpf2go -tags linux -target bpfel SockfileCompat sockfile_compat.bpf.c
