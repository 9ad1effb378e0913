package bpf

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// TestHelperErrnoCompare32: no program compares a helper's or kfunc's
// return value, as a 64-bit number, with a negative constant (-E2BIG,
// -EEXIST...). Before Linux 6.4 the map helpers return a 32-bit int through
// the map's own function, and the upper half of the register comes back
// zero: -E2BIG reads as 4294967289, the comparison never matches, and the
// tracker counted a full map as an update error and never retried EEXIST.
// Declaring the result int makes clang compare its low 32 bits, right on
// every kernel. The compiled objects are checked, since this host's kernel
// (6.4+) cannot tell the two apart.
func TestHelperErrnoCompare32(t *testing.T) {
	for name, load := range map[string]func() (*ebpf.CollectionSpec, error){
		"tracker": LoadTracker, "owners": LoadOwners, "owners compat": LoadOwnersCompat,
		"sockets": LoadSockets, "destroy": LoadDestroy, "sockfile": LoadSockfile,
	} {
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		for pname, p := range spec.Programs {
			for _, bad := range wideErrnoCompares(p.Instructions) {
				t.Errorf("%s %s: %v compares a call's result as 64 bits with a negative constant: declare it int", name, pname, bad)
			}
		}
	}
}

// wideErrnoCompares finds the 64-bit conditional jumps that compare a
// register holding a call's result (r0 after a call, or a plain copy of
// it) with a negative constant, immediate or loaded by ld_imm64. A shift,
// as clang's zero or sign extension of an int, or any other write ends the
// register's tracking. One pass in program order: enough for what clang
// emits right after a call.
func wideErrnoCompares(insns asm.Instructions) []asm.Instruction {
	var bad []asm.Instruction
	result := map[asm.Register]bool{}   // holds a call's result
	negative := map[asm.Register]bool{} // holds a negative 64-bit constant
	for _, ins := range insns {
		op := ins.OpCode
		switch {
		case op.JumpOp() == asm.Call:
			clear(result)
			clear(negative)
			result[asm.R0] = true
		case op.Class() == asm.JumpClass && op.JumpOp() != asm.Ja && op.JumpOp() != asm.Exit:
			if !result[ins.Dst] {
				break
			}
			if op.Source() == asm.ImmSource && ins.Constant < 0 || op.Source() == asm.RegSource && negative[ins.Src] {
				bad = append(bad, ins)
			}
		case ins.IsLoadFromMap() || ins.IsConstantLoad(asm.DWord):
			delete(result, ins.Dst)
			negative[ins.Dst] = ins.Constant < 0 && ins.IsConstantLoad(asm.DWord)
		case op.Class().IsALU() && op.ALUOp() == asm.Mov && op.Source() == asm.RegSource && op.Class() == asm.ALU64Class:
			result[ins.Dst] = result[ins.Src]
			negative[ins.Dst] = negative[ins.Src]
		case op.Class().IsALU() || op.Class().IsLoad():
			delete(result, ins.Dst)
			delete(negative, ins.Dst)
		}
	}
	return bad
}
