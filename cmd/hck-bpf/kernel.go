package main

import (
	"github.com/rs/zerolog"

	"github.com/hck-bpf/hck-bpf/internal/kernel"
)

// kernelRules applies the kernel version rules, with one clear warning when
// the running kernel cannot destroy some states; nil (destroy everything)
// when its version cannot be read.
func kernelRules(log zerolog.Logger) *kernel.Capabilities {
	rules, err := kernel.Running()
	if err != nil {
		log.Warn().Err(err).Msg("Could not read the kernel version: assuming it can destroy every state")
		return nil
	}
	if w := rules.Warning(); w != "" {
		log.Warn().Str("kernel", rules.Release).Msg(w)
	}
	return &rules.Capabilities
}
