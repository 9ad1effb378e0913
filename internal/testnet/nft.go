package testnet

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
)

// Table is the nftables table every rule of this package lives in, inside
// the test's namespace. Each Filter owns one chain of it; nothing here ever
// flushes the table or another Filter's chain.
const Table = "inet hcktest"

// chainSeq names chains uniquely across all namespaces of the test binary.
var chainSeq atomic.Uint64

// Nft applies an nft script (nft -f) inside the namespace, as one
// transaction: all of it or nothing.
func (ns *NS) Nft(t testing.TB, script string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "rules-*.nft")
	if err != nil {
		t.Fatalf("write nft script: %v", err)
	}
	_, err = f.WriteString(script)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("write nft script: %v", err)
	}
	if _, err := ns.Run("nft", "-f", f.Name()); err != nil {
		t.Fatalf("apply nft script in %s: %v\n%s", ns.Name, err, script)
	}
}

// Filter is a chain of drop rules of its own, hooked on input in the
// namespace's Table. On loopback every packet passes input once, on the
// receiving side: a drop there looks like loss on the wire to both ends
// (a drop on output would be reported to the sender as a local error).
type Filter struct {
	ns      *NS
	chain   string
	rules   []string
	removed bool
}

// Drop adds a chain that drops the packets each match selects, for instance
// Flow(from, to) or Flow(from, to)+" tcp flags & (syn|ack|fin|rst) == ack".
// The chain is removed when t ends, before the sockets are closed, so the
// closing resets get through.
func (ns *NS) Drop(t testing.TB, matches ...string) *Filter {
	t.Helper()
	f := &Filter{ns: ns, chain: fmt.Sprintf("drop%d", chainSeq.Add(1))}
	var b strings.Builder
	fmt.Fprintf(&b, "add table %s\n", Table)
	fmt.Fprintf(&b, "add chain %s %s { type filter hook input priority filter; policy accept; }\n", Table, f.chain)
	f.rules = dropRules(matches)
	for _, r := range f.rules {
		fmt.Fprintf(&b, "add rule %s %s %s\n", Table, f.chain, r)
	}
	ns.Nft(t, b.String())
	t.Cleanup(func() { f.remove() })
	return f
}

// Set replaces the filter's rules with drops of matches, atomically: no
// packet sees the chain empty in between.
func (f *Filter) Set(t testing.TB, matches ...string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "flush chain %s %s\n", Table, f.chain)
	rules := dropRules(matches)
	for _, r := range rules {
		fmt.Fprintf(&b, "add rule %s %s %s\n", Table, f.chain, r)
	}
	f.ns.Nft(t, b.String())
	f.rules = rules
}

// Remove deletes the filter's chain: its packets flow again.
func (f *Filter) Remove(t testing.TB) {
	t.Helper()
	if err := f.remove(); err != nil {
		t.Fatal(err)
	}
}

func (f *Filter) remove() error {
	if f.removed {
		return nil
	}
	if _, err := f.ns.Run("nft", "delete", "chain", "inet", "hcktest", f.chain); err != nil {
		return fmt.Errorf("remove filter %s: %w", f.chain, err)
	}
	f.rules, f.removed = nil, true
	return nil
}

// Rules are the filter's current rules as nft prints them.
func (f *Filter) Rules() []string { return append([]string(nil), f.rules...) }

func (f *Filter) String() string {
	return fmt.Sprintf("chain %s %s: %s", Table, f.chain, strings.Join(f.rules, "; "))
}

func dropRules(matches []string) []string {
	rules := make([]string, 0, len(matches))
	for _, m := range matches {
		rules = append(rules, m+" drop")
	}
	return rules
}

// Flow is the nft match for TCP packets from one socket address to another:
// "ip saddr 127.0.0.1 tcp sport 40000 ip daddr 127.0.0.1 tcp dport 40001"
// (ip6 for IPv6). Keyed on addresses and ports, it catches one connection
// only, so builders running side by side never drop each other's packets.
func Flow(from, to netip.AddrPort) string {
	l3 := "ip"
	if from.Addr().Is6() && !from.Addr().Is4In6() {
		l3 = "ip6"
	}
	return fmt.Sprintf("%s saddr %s tcp sport %d %s daddr %s tcp dport %d",
		l3, from.Addr().Unmap(), from.Port(), l3, to.Addr().Unmap(), to.Port())
}
