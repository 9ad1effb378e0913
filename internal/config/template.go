// Package config is hck-bpf's configuration file.
package config

// Template is the config file 'hck-bpf install' writes: every key at its
// default, commented. A placeholder until the config file exists (issue
// 11, H1 owns this file): install writes it, uninstall keeps a file that
// differs from it.
func Template() []byte {
	return []byte(`# hck-bpf configuration (YAML). Flags given to 'hck-bpf run' override it.
# Every key is commented out at its default.
`)
}
