#!/usr/bin/env bash
# boot.sh KDIR INITRD OUT: boot the kernel unpacked in KDIR under qemu with
# the host's root shared read-only over 9p and OUT shared writable; the
# guest (guest.sh) runs the test binaries listed in OUT/tests and powers
# off. The console goes to OUT/console.log. Exits non-zero when the guest
# did not finish (no OUT/results/.done) within KERNELS_TIMEOUT seconds (1800).
#
# ACCEL=kvm|tcg chooses the accelerator; unset, probe() decides: /dev/kvm
# exists on some machines where KVM cannot run a stock kernel (nested
# software virtualisation dies with "KVM internal error ... emulation
# failure"), so a tiny boot tells, and TCG is the fallback.
set -euo pipefail

kdir=$1
initrd=$2
out=$3
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
timeout=${KERNELS_TIMEOUT:-1800}

vmlinuz=$(ls "$kdir"/boot/vmlinuz-* | head -1)

# qemu's arguments but for the accelerator and the command line.
common=(-m 1G -smp 2 -nographic -no-reboot -net none
	-kernel "$vmlinuz" -initrd "$initrd")

accel_args() {
	case $1 in
	kvm) echo "-accel kvm -cpu host" ;;
	tcg) echo "-accel tcg,thread=multi -cpu max" ;;
	esac
}

# probe: does KVM boot this kernel? The initramfs's init answers "booted"
# and powers off at once when HCK_PROBE=1: a few seconds under KVM.
probe() {
	[ -w /dev/kvm ] || { echo tcg; return; }
	local log
	log=$(mktemp)
	# qemu stops the guest but stays up after "KVM internal error": watch
	# the console and end it as soon as it has said either.
	# shellcheck disable=SC2046
	qemu-system-x86_64 $(accel_args kvm) "${common[@]}" \
		-append "console=ttyS0 panic=-1 quiet HCK_PROBE=1" </dev/null >"$log" 2>&1 &
	local pid=$! i
	for i in $(seq 120); do
		kill -0 "$pid" 2>/dev/null || break
		grep -q 'hck-init: booted\|KVM internal error\|qemu-system-x86_64: error' "$log" && break
		sleep 0.5
	done
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	if grep -q 'hck-init: booted' "$log"; then
		echo kvm
	else
		echo "boot: KVM cannot run this kernel here ($(grep -m1 -o 'KVM internal error.*\|qemu-system-x86_64: error.*' "$log" || echo 'no boot within 60s')): using TCG" >&2
		echo tcg
	fi
	rm -f "$log"
}

accel=${ACCEL:-$(probe)}
echo "boot: $(basename "$vmlinuz") under $accel, timeout ${timeout}s" >&2

case $out in
/run/* | /boot/* | /proc/* | /sys/* | /dev/*)
	echo "boot: $out is under a directory the guest mounts its own tmpfs on: choose another" >&2
	exit 2
	;;
esac
rm -rf "$out/results"
# shellcheck disable=SC2046
timeout --foreground -k 10 "$timeout" qemu-system-x86_64 $(accel_args "$accel") "${common[@]}" \
	-virtfs "local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap" \
	-virtfs "local,path=$out,mount_tag=out,security_model=none,multidevs=remap" \
	-append "console=ttyS0 panic=-1 quiet loglevel=4 HCK_GUEST=$here/guest.sh HCK_OUT=$out HCK_KDIR=$kdir HCK_SRC=$src" \
	</dev/null >"$out/console.log" 2>&1 || true

if ! [ -f "$out/results/.done" ]; then
	echo "boot: the guest did not finish; the console's last lines ($out/console.log):" >&2
	tail -30 "$out/console.log" >&2
	exit 1
fi
