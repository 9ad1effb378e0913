package main

import (
	"github.com/rs/zerolog"

	"github.com/hck-bpf/hck-bpf/internal/doctor"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
)

// kernelLimits applies the kernel version rules, with one clear warning
// when the running kernel cannot destroy some states.
func kernelLimits(log zerolog.Logger) sweep.KernelLimits {
	rules, err := doctor.Kernel()
	if err != nil {
		log.Warn().Err(err).Msg("Could not read the kernel version: assuming it can destroy every state")
		return sweep.KernelLimits{}
	}
	if w := rules.Warning(); w != "" {
		log.Warn().Str("kernel", rules.Release).Msg(w)
	}
	return sweep.KernelLimits{NoTimewait: !rules.DestroyTimewait, NoOrphans: !rules.DestroyOrphans}
}
