package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// killPhase measures `hck-bpf kill --peer CIDR --live` against `ss -K dst
// CIDR`: p.killPeer ESTABLISHED connections from peerAddr (127.0.0.2)
// among p.killN sockets. The sockets of all but one holder are built once
// and stay (ESTABLISHED on 127.0.0.1, untouched by either command); the
// holder of the peer's connections is built afresh before every timed
// run, so each command meets an identical fresh set. The runs alternate,
// hck-bpf first in even rounds, ss first in odd ones.
func (b *bench) killPhase(ctx context.Context, p plan) error {
	pin := b.pin("kill")
	b.pins[pin] = true
	defer b.unload(pin)
	peer := peerAddr.String() + "/32"
	background, fresh := planKill(p.killN, p.killPeer)
	b.progress("kill: building %s sockets, %s ESTABLISHED from %s among them", fmtCount(p.killN), fmtCount(p.killPeer), peerAddr)
	bg, _, err := b.buildSet(ctx, background)
	if err != nil {
		return err
	}
	defer bg.stop()

	// once builds the peer's holder, runs kill, and counts what it left.
	once := func(kill func() (time.Duration, error)) (time.Duration, int, error) {
		hs, _, err := b.buildSet(ctx, []holdSpec{fresh})
		if err != nil {
			return 0, 0, err
		}
		defer hs.stop()
		before, err := countPeer(ctx, peer)
		if err != nil {
			return 0, 0, err
		}
		if before != p.killPeer {
			return 0, 0, fmt.Errorf("kill: %d connections from %s, want %d", before, peerAddr, p.killPeer)
		}
		d, err := kill()
		if err != nil {
			return 0, 0, err
		}
		left, err := countPeer(ctx, peer)
		return d, left, err
	}
	hckArgs := []string{"kill", "--peer", peer, "--live", "--log-format", "json"}
	var sum killSummary
	hckRun := func() (time.Duration, error) {
		d, out, err := b.hck(ctx, pin, hckArgs...)
		s, serr := parseKillSummary(out)
		if err == nil {
			err = serr
		}
		sum = s
		return d, err
	}
	ssRun := func() (time.Duration, error) {
		d, _, err := timed(ctx, "ss", "-K", "dst", peer)
		return d, err
	}

	// The first kill on a pin dir loads and pins its owner lookup (the
	// sockfile program, an owners iterator): a cost paid once per host
	// and build, measured apart.
	b.progress("kill: first run on a fresh pin dir (loads and pins the owner lookup)")
	first, firstLeft, err := once(hckRun)
	if err != nil {
		return err
	}

	var hckT, ssT, took []time.Duration
	var steps string
	hckLeft, ssLeft, failed, refused := firstLeft, 0, sum.Failed, sum.Refused
	for r := range p.killReps {
		for k := range 2 {
			if (r+k)%2 == 0 {
				b.progress("kill, round %d: hck-bpf kill --peer %s --live", r+1, peer)
				d, left, err := once(hckRun)
				if err != nil {
					return err
				}
				hckT, hckLeft = append(hckT, d), hckLeft+left
				took = append(took, time.Duration(sum.TookS*float64(time.Second)))
				steps = sum.steps()
				failed += sum.Failed
				refused += sum.Refused
			} else {
				b.progress("kill, round %d: ss -K dst %s", r+1, peer)
				d, left, err := once(ssRun)
				if err != nil {
					return err
				}
				ssT, ssLeft = append(ssT, d), ssLeft+left
			}
		}
	}
	kept := 0
	for _, s := range background {
		kept += s.sockets()
	}
	hck, ss := median(hckT), median(ssT)
	what := fmt.Sprintf("kill --peer CIDR: %s ESTABLISHED among %s, kill --live vs ss -K dst (processes)", fmtCount(p.killPeer), fmtCount(p.killN))
	t := b.single()
	t.add(row{What: what, Hck: fmtDur(hck), Cmp: fmtDur(ss), Ratio: fmtRatio(ratio(ss, hck)), Target: "≥ 1×",
		Result: verdict(ss >= hck && hckLeft == 0 && failed == 0 && refused == 0)})
	t.info(fmt.Sprintf("kill --peer CIDR: %s ESTABLISHED among %s, the kill inside the process (took)", fmtCount(p.killPeer), fmtCount(p.killN)),
		fmtDur(median(took)), "", "")
	lo, hi := minmax(hckT)
	slo, shi := minmax(ssT)
	t.note("kill: `hck-bpf kill --peer %s --live` vs `ss -K dst %s`, whole processes, medians of %d runs each, alternating (hck-bpf %s–%s, ss %s–%s); "+
		"each on a fresh holder of %s sockets (the peer's connections among them), beside %s sockets built once; no tracker attached",
		peer, peer, len(hckT), fmtDur(lo), fmtDur(hi), fmtDur(slo), fmtDur(shi), fmtCount(fresh.sockets()), fmtCount(kept))
	t.note("kill: took = the dump, the owner lookup and the lookups and destroys, without process start and logging (last run: %s); "+
		"the first kill on the pin dir, which loads and pins the owner lookup, took %s", steps, fmtDur(first))
	t.note("kill: connections from the peer left afterwards: hck-bpf %d, ss -K %d; hck-bpf failed %d, refused %d", hckLeft, ssLeft, failed, refused)
	return nil
}

// planKill splits n sockets over holders like planMixed, all ESTABLISHED:
// the last holder's connections are rebuilt for every run, peer of them
// from peerAddr; the others stay.
func planKill(n, peer int) (background []holdSpec, fresh holdSpec) {
	const perHolder = 16000
	holders := (n + perHolder - 1) / perHolder
	for i := range holders {
		socks := n / holders
		if i == 0 {
			socks += n % holders
		}
		conns := (socks - 1) / 2
		if i == holders-1 {
			fresh = holdSpec{Est: conns - peer, Peer: peer}
			break
		}
		background = append(background, holdSpec{Est: conns})
	}
	return background, fresh
}

// countPeer counts the namespace's sockets whose remote address is in
// prefix (their server ends).
func countPeer(ctx context.Context, prefix string) (int, error) {
	_, out, err := timed(ctx, "ss", "-Htn", "dst", prefix)
	if err != nil {
		return 0, err
	}
	return bytes.Count(out, []byte("\n")), nil
}

// killSummary is the machine summary a kill logs at the end (JSON).
type killSummary struct {
	Summary    string  `json:"summary"`
	Matched    int     `json:"matched"`
	Terminated int     `json:"terminated"`
	Refused    int     `json:"refused"`
	Failed     int     `json:"failed"`
	TookS      float64 `json:"took_s"`
	DumpS      float64 `json:"took_dump_s"`
	OwnersS    float64 `json:"took_owners_s"`
	ActS       float64 `json:"took_act_s"`
}

func (s killSummary) steps() string {
	d := func(f float64) string { return fmtDur(time.Duration(f * float64(time.Second))) }
	return fmt.Sprintf("dump %s, owners %s, look up and destroy %s", d(s.DumpS), d(s.OwnersS), d(s.ActS))
}

func parseKillSummary(out []byte) (killSummary, error) {
	var s killSummary
	for _, l := range bytes.Split(out, []byte("\n")) {
		if !bytes.Contains(l, []byte(`"summary"`)) {
			continue
		}
		if err := json.Unmarshal(l, &s); err == nil && s.Summary == "kill" {
			if s.Terminated != s.Matched {
				return s, errors.New("kill: terminated " + strconv.Itoa(s.Terminated) + " of " + strconv.Itoa(s.Matched) + " matched")
			}
			return s, nil
		}
	}
	return s, errors.New("no summary line in the kill's output")
}
