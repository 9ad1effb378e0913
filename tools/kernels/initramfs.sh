#!/usr/bin/env bash
# initramfs.sh KDIR OUT: a small initramfs for the kernel unpacked in KDIR:
# busybox-static, the modules that reach the host's root over virtio 9p
# (loaded in this order by init), and tools/kernels/init as /init. About
# 1.5 MB; written to OUT.
set -euo pipefail

kdir=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)

# Dependency order: virtio transport first, then 9p's network layer, then
# the filesystem. netfs and fscache are 9p's dependencies on 6.1.
modules="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p"

# busybox-static's /bin/busybox: the initramfs has no libc.
busybox=/bin/busybox
if ! [ -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
	echo "initramfs: needs a static /bin/busybox (apt-get install busybox-static)" >&2
	exit 1
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$busybox" "$root/bin/busybox"
cp "$here/init" "$root/init"
chmod +x "$root/init"

release=$(ls "$kdir/lib/modules" | head -1)
: > "$root/lib/modules/order"
for m in $modules; do
	# The module's file: one of kernel/**/NAME.ko, uncompressed or xz.
	f=$(find "$kdir/lib/modules/$release/kernel" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" \) | head -1)
	if [ -z "$f" ]; then
		# Built in: nothing to load.
		grep -q "/$m.ko" "$kdir/lib/modules/$release/modules.builtin" 2>/dev/null && continue
		echo "initramfs: module $m not found in $kdir" >&2
		exit 1
	fi
	case $f in
	*.xz) xz -dc "$f" > "$root/lib/modules/$m.ko" ;;
	*.zst) zstd -qdc "$f" > "$root/lib/modules/$m.ko" ;;
	*) cp "$f" "$root/lib/modules/$m.ko" ;;
	esac
	echo "$m" >> "$root/lib/modules/order"
done

(cd "$root" && find . | "$busybox" cpio -o -H newc 2>/dev/null | gzip -1) > "$out.tmp"
mv "$out.tmp" "$out"
