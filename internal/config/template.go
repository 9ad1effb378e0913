// Package config: placeholder for issue 11's H1 (the lead keeps H1's
// version of this file): only the signature the package build relies on.
package config

// Template returns the commented configuration file with every key at
// its default.
func Template() []byte {
	return []byte(`# hck-bpf configuration: every key at its default.
# metrics_addr: ""
# webhooks: []
`)
}
