package kernel

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// VmlinuxBTF is the kernel's own BTF, which tp_btf, iterators and CO-RE
// relocations all need.
const VmlinuxBTF = "/sys/kernel/btf/vmlinux"

// CheckBTF fails when the kernel has no BTF: hck-bpf cannot load anything.
func CheckBTF() error {
	if _, err := os.Stat(VmlinuxBTF); err != nil {
		return fmt.Errorf("kernel BTF is missing (%s): hck-bpf needs a kernel built with CONFIG_DEBUG_INFO_BTF=y", VmlinuxBTF)
	}
	return nil
}

// HZ reads CONFIG_HZ from the running kernel's config (/proc/config.gz, or
// /boot/config-RELEASE); 0 if unknown.
func HZ() uint32 {
	release, _ := Release()
	for _, path := range []string{"/proc/config.gz", "/boot/config-" + release} {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		var r io.Reader = f
		if strings.HasSuffix(path, ".gz") {
			gz, err := gzip.NewReader(f)
			if err != nil {
				f.Close()
				continue
			}
			r = gz
		}
		hz := parseHZ(r)
		f.Close()
		if hz != 0 {
			return hz
		}
	}
	return 0
}

func parseHZ(r io.Reader) uint32 {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Bytes()
		if v, ok := bytes.CutPrefix(line, []byte("CONFIG_HZ=")); ok {
			n, err := strconv.ParseUint(string(v), 10, 32)
			if err == nil {
				return uint32(n)
			}
		}
	}
	return 0
}
