package main

import (
	"strings"
)

// listFlags take several values in every form the scripts accepted:
// --exclude-ports 22 3306 (Python), --exclude-ports "22 3306" (Bash),
// commas, and repeated flags.
var listFlags = map[string]bool{
	"--exclude-ports":     true,
	"--include-ports":     true,
	"--exclude-processes": true,
}

// sweepCommands accept the scripts' flags and no positional arguments.
var sweepCommands = map[string]bool{"scan": true, "run": true}

// normalizeArgs turns the scripts' command lines into cobra's:
//   - "hck-bpf --live ..." (no subcommand) runs scan, so cron lines keep
//     working with only the binary name changed;
//   - "--exclude-ports 22 3306 5432" (argparse nargs='+') becomes one
//     --exclude-ports per value.
func normalizeArgs(args []string) []string {
	if len(args) > 0 && strings.HasPrefix(args[0], "-") && !isHelpOrVersion(args[0]) {
		args = append([]string{"scan"}, args...)
	}
	if len(args) == 0 || !sweepCommands[args[0]] {
		return args
	}
	out := []string{args[0]}
	for i := 1; i < len(args); i++ {
		a := args[i]
		out = append(out, a)
		if a == "--" {
			out = append(out, args[i+1:]...)
			break
		}
		if !listFlags[a] {
			continue
		}
		// The flag's own value, then every following bare word.
		first := true
		for i+1 < len(args) && (first || !strings.HasPrefix(args[i+1], "-")) {
			i++
			if !first {
				out = append(out, a)
			}
			out = append(out, args[i])
			first = false
		}
	}
	return out
}

func isHelpOrVersion(a string) bool {
	switch a {
	case "-h", "--help", "--version":
		return true
	}
	return false
}

// isFlagError recognises cobra/pflag's parse errors, which carry no type.
func isFlagError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown flag", "unknown shorthand flag", "flag needs an argument",
		"invalid argument", "unknown command", "accepts ", "bad flag syntax", "required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
