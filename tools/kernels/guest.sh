#!/bin/bash
# guest.sh: PID 1 of a test kernel, on the host's root mounted read-only
# over 9p (see init). Mounts what the tests need, points module autoloading
# at the unpacked kernel's modules, runs every test binary listed in
# $HCK_OUT/tests (built on the host by matrix.sh) with -test.v=test2json,
# writing each one's output to $HCK_OUT/results/NAME.out, then powers off.
# Whatever happens, it powers off: the host's timeout is the last resort.
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

off() {
	sync
	busybox poweroff -f
	echo o > /proc/sysrq-trigger
	sleep 60
}
trap off EXIT
say() { echo "hck-guest: $*"; }

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs shm /dev/shm
# The host's root as it is, before the tmpfs on /tmp hides part of it: a
# checkout under /tmp (a CI clone) is bound back from here below.
mount --bind / /mnt
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
case $HCK_SRC in
/tmp/*)
	mkdir -p "$HCK_SRC"
	mount --bind "/mnt$HCK_SRC" "$HCK_SRC"
	;;
esac
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

# The results share, at the same path as on the host.
mkdir -p "$HCK_OUT" 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out "$HCK_OUT" || {
	say "mount of the results share failed"
	exit 1
}

release=$(uname -r)
# No IKCONFIG on Debian's kernels: the tests (kernel.HZ) read
# /boot/config-RELEASE, which the host's /boot does not have.
mount -t tmpfs boot /boot
cp "$HCK_KDIR/boot/config-$release" /boot/

# Module autoloading (nf_tables for the tests' nft rules, inet_diag and
# tcp_diag for sock_diag): the kernel runs this wrapper, which looks in the
# unpacked package's lib/modules (indexed by fetch.sh's depmod -b).
cat > /run/modprobe <<EOW
#!/bin/sh
exec /sbin/modprobe -d "$HCK_KDIR" "\$@"
EOW
chmod +x /run/modprobe
echo /run/modprobe > /proc/sys/kernel/modprobe

# The host's limits are not inherited: TestBatch needs more than the
# kernel's default 4096 descriptors.
ulimit -Hn 65536
ulimit -Sn 65536
ip link set lo up
hostname "hck-$release"
mkdir -p /tmp/home /tmp/gocache
# Go writes nothing to the read-only root: a home and a build cache on
# tmpfs, and no network; guest.env names the host's module cache (read
# only: go list in TestNoTesting finds every module there).
export HOME=/tmp/home GOCACHE=/tmp/gocache GOPROXY=off GOTOOLCHAIN=local TMPDIR=/tmp
# matrix.sh's settings for the tests (a smaller churn, the prebuilt
# binary, Go's module cache).
set -a
. "$HCK_OUT/guest.env"
set +a

say "kernel $release up; running the tests"
mkdir -p "$HCK_OUT/results"
# Each line: NAME IMPORTPATH DIR BINARY. A test runs in its package's
# directory, as under go test (testdata/ is found there).
while read -r name pkg dir bin; do
	start=$(date +%s)
	(cd "$dir" && "$bin" -test.v=test2json -test.count=1 ${HCK_TEST_SKIP:+-test.skip="$HCK_TEST_SKIP"} \
		${HCK_TEST_RUN:+-test.run="$HCK_TEST_RUN"} \
		-test.timeout="${HCK_TEST_TIMEOUT:-10m}" </dev/null >"$HCK_OUT/results/$name.out" 2>&1)
	echo $? >"$HCK_OUT/results/$name.exit"
	say "$pkg: exit $(cat "$HCK_OUT/results/$name.exit") in $(($(date +%s) - start))s"
done <"$HCK_OUT/tests"
echo done >"$HCK_OUT/results/.done"
say "all done"
