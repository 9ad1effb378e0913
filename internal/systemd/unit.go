// Package systemd: placeholder for issue 11's H2 (the lead keeps H2's
// version of this file): only the signature the package build relies on.
package systemd

import "fmt"

// Unit returns the systemd unit that runs bin as the service.
func Unit(bin string) []byte {
	return fmt.Appendf(nil, `[Unit]
Description=hck-bpf: destroy hung TCP connections in the kernel
After=network.target

[Service]
Type=simple
ExecStart=%s run --live --config /etc/hck-bpf/config.yaml

[Install]
WantedBy=multi-user.target
`, bin)
}
