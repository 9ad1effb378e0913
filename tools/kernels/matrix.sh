#!/usr/bin/env bash
# matrix.sh: make test-kernels. Runs the whole test suite, privileged tests
# included, inside each kernel of the matrix under qemu, and prints a
# summary per kernel (tools/kernels/summary). Exits 1 if a test failed on
# any kernel.
#
# The matrix: Debian 12's generic kernel (the linux-image-6.1.*-amd64
# package that linux-image-amd64 depends on in bookworm's apt sources), and
# the host's own kernel when an image of it can be had (/boot/vmlinuz-* with
# /lib/modules/*, or a linux-image-$(uname -r) package); otherwise the host
# kernel's run is `make test`.
#
# Settings (environment):
#   KERNELS          Debian kernel packages to test instead of the default
#   KERNELS_CACHE    where packages are unpacked (~/.cache/hck-bpf/kernels)
#   KERNELS_OUT      test binaries and results (bin/kernels)
#   KERNELS_TIMEOUT  seconds one guest may run before it is stopped (1800)
#   KERNELS_CHURN    TestChurn's connections in the guest (10000)
#   KERNELS_SKIP     packages not run in the guest (tools/package: it builds
#                    a .deb with go build, nothing of the kernel; make test
#                    runs it)
#   KERNELS_SKIP_TESTS  a -test.skip pattern for the guest (TestNoTesting:
#                    go list over 9p takes 80 s under TCG and reads no
#                    kernel; make test runs it)
#   KERNELS_RUN      a -test.run pattern for the guest (to rerun one test)
#   ACCEL            kvm or tcg, instead of probing
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

cache=${KERNELS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hck-bpf/kernels}
outroot=${KERNELS_OUT:-$repo/bin/kernels}
mkdir -p "$outroot"
outroot=$(cd "$outroot" && pwd)

for tool in qemu-system-x86_64 depmod dpkg-deb apt-get; do
	command -v "$tool" >/dev/null || {
		echo "test-kernels: needs $tool (apt-get install qemu-system-x86 kmod busybox-static)" >&2
		exit 2
	}
done

# The matrix: "NAME KDIR" per kernel. Debian's kernels are fetched; the
# host's is used in place when it is on disk.
matrix=()
if [ -n "${KERNELS:-}" ]; then
	pkgs=$KERNELS
else
	pkgs=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-6\.1\./ {print $2; exit}')
	[ -n "$pkgs" ] || {
		echo "test-kernels: no linux-image-6.1.*-amd64 in apt's sources (apt-get update? bookworm's main)" >&2
		exit 2
	}
fi
host=$(uname -r)
if [ -f "/boot/vmlinuz-$host" ] && [ -d "/lib/modules/$host" ]; then
	matrix+=("$host /")
elif apt-cache show "linux-image-$host" >/dev/null 2>&1; then
	pkgs="$pkgs linux-image-$host"
else
	echo "test-kernels: the host's kernel $host has no image here (not in /boot, no linux-image-$host package): its run is make test" >&2
fi
for pkg in $pkgs; do
	kdir=$("$here/fetch.sh" "$pkg" "$cache")
	matrix+=("$(ls "$kdir/lib/modules" | head -1) $kdir")
done

# The test binaries, built once on the host for every kernel: one per
# package with tests, run in the guest from the package's directory. The
# command's e2e tests use the binary built here (HCK_BPF_TEST_BIN).
echo "test-kernels: building the test binaries" >&2
rm -rf "$outroot/bin"
mkdir -p "$outroot/bin"
go build -o "$outroot/bin/hck-bpf" ./cmd/hck-bpf
list=$outroot/tests
skip=" ${KERNELS_SKIP-tools/package} "
testpkgs=()
go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Dir}}{{end}}' ./... | sed '/^$/d' >"$list.all"
while read -r pkg dir; do
	rel=${pkg#github.com/hck-bpf/hck-bpf/}
	if [[ $skip == *" $rel "* ]]; then
		echo "test-kernels: not run in the guest: $rel (KERNELS_SKIP)" >&2
		continue
	fi
	name=$(echo "$rel" | tr / _)
	echo "$name $pkg $dir $outroot/bin/$name.test"
	testpkgs+=("$pkg")
done <"$list.all" >"$list"
rm "$list.all"
go test -c -o "$outroot/bin/" "${testpkgs[@]}"
while read -r name pkg dir bin; do
	# go test -c names a binary after its package's last element.
	built=$outroot/bin/$(basename "$pkg").test
	[ "$built" = "$bin" ] || mv "$built" "$bin"
done <"$list"

# What the guests leave out, named in each summary's heading.
notrun=$(echo ${KERNELS_SKIP-tools/package} ${KERNELS_SKIP_TESTS-^TestNoTesting\$} | sed 's/ /, /g')
status=0
summaries=()
for entry in "${matrix[@]}"; do
	read -r release kdir <<<"$entry"
	out=$outroot/$release
	rm -rf "$out"
	mkdir -p "$out"
	cp "$list" "$out/tests"
	cat >"$out/guest.env" <<ENV
HCK_TEST_CHURN=${KERNELS_CHURN:-10000}
HCK_TEST_RUN=$(printf %q "${KERNELS_RUN-}")
HCK_TEST_SKIP=$(printf %q "${KERNELS_SKIP_TESTS-^TestNoTesting\$}")
HCK_BPF_TEST_BIN=$outroot/bin/hck-bpf
GOPATH=$(printf %q "$(go env GOPATH)")
GOMODCACHE=$(printf %q "$(go env GOMODCACHE)")
GOFLAGS=$(printf %q "$(go env GOFLAGS)")
ENV
	"$here/initramfs.sh" "$kdir" "$out/initrd.gz"
	start=$(date +%s)
	"$here/boot.sh" "$kdir" "$out/initrd.gz" "$out" 2>&1 | tee "$out/boot.log" >&2 || status=1
	secs=$(($(date +%s) - start))
	accel=$(grep -o 'under [a-z]*' "$out/boot.log" | head -1 | cut -d' ' -f2)
	for f in "$out"/results/*.out; do
		[ -e "$f" ] || continue
		name=$(basename "$f" .out)
		pkg=$(awk -v n="$name" '$1 == n {print $2}' "$out/tests")
		go tool test2json -p "$pkg" <"$f" >"$out/results/$name.json"
	done
	go run ./tools/kernels/summary -kernel "$release" -note "${accel:-?}, ${secs}s; not run: ${notrun:-nothing}" "$out" >"$out/summary.txt" || status=1
	summaries+=("$out/summary.txt")
done

echo
for s in "${summaries[@]}"; do
	cat "$s"
	echo
done
if [ "$status" -ne 0 ]; then
	echo "test-kernels: failures (the guests' output: $outroot/*/results, consoles: $outroot/*/console.log)"
fi
exit "$status"
