#!/usr/bin/env bash
# fetch.sh PACKAGE CACHE: download one Debian kernel package and unpack it
# into CACHE/PACKAGE (boot/vmlinuz-*, boot/config-*, lib/modules/*), with
# the modules' dependency index built for that tree (depmod -b), so the
# guest's modprobe can load nf_tables, inet_diag, tcp_diag... on demand.
# Nothing is installed: the host's /boot and /lib/modules are not touched.
# Prints the unpacked directory. A second call with the same package reuses it.
set -euo pipefail

pkg=$1
cache=$2
dir=$cache/$pkg

if [ -f "$dir/.unpacked" ]; then
	echo "$dir"
	exit 0
fi

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# apt-get download writes into the current directory; as root it warns that
# _apt cannot write there, which is harmless.
(cd "$tmp" && apt-get download -q "$pkg" 2>&1 | grep -v 'unsandboxed as root' >&2) || true
deb=$(ls "$tmp"/"${pkg}"_*.deb 2>/dev/null | head -1)
if [ -z "$deb" ]; then
	echo "fetch: apt-get download $pkg gave no package (apt-cache search linux-image lists what there is)" >&2
	exit 1
fi

rm -rf "$dir"
mkdir -p "$dir"
dpkg-deb -x "$deb" "$dir"
release=$(ls "$dir/lib/modules" | head -1)
depmod -b "$dir" "$release"
echo "$(basename "$deb")" > "$dir/.unpacked"
echo "$dir"
