package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// listFlags take several values in every form the scripts accepted:
// --exclude-ports 22 3306 (Python), --exclude-ports "22 3306" (Bash),
// commas, and repeated flags.
var listFlags = map[string]bool{
	"--exclude-ports":     true,
	"--include-ports":     true,
	"--exclude-processes": true,
	"--exclude-cgroups":   true,
	"--include-cgroups":   true,
}

// sweepCommands accept the scripts' flags and no positional arguments.
var sweepCommands = map[string]bool{"scan": true, "run": true}

// cliShape is what normalizeArgs needs to know of the command tree: the
// subcommand names, and the global flags with whether each takes a value.
type cliShape struct {
	commands map[string]bool
	// globals maps "--name" and "-x" of every global flag to whether it
	// takes a value ("--pin-dir X") or not ("-v").
	globals map[string]bool
}

// shapeOf reads the shape from root, so that a new command or global flag
// is known here without another list to keep in step.
func shapeOf(root *cobra.Command) cliShape {
	s := cliShape{commands: map[string]bool{"help": true, "completion": true}, globals: map[string]bool{}}
	for _, c := range root.Commands() {
		s.commands[c.Name()] = true
		for _, a := range c.Aliases {
			s.commands[a] = true
		}
	}
	add := func(f *pflag.Flag) {
		takesValue := f.NoOptDefVal == ""
		s.globals["--"+f.Name] = takesValue
		if f.Shorthand != "" {
			s.globals["-"+f.Shorthand] = takesValue
		}
	}
	root.PersistentFlags().VisitAll(add)
	root.Flags().VisitAll(add) // --help, --version
	for _, f := range []string{"--help", "-h", "--version"} {
		s.globals[f] = false
	}
	return s
}

// commandAt returns the index of the subcommand in args: the first word
// that is neither a global flag nor a global flag's value. It returns -1
// when there is none, or when a flag of another kind (a sweep flag such
// as --live) comes first: the scripts' form.
func (s cliShape) commandAt(args []string) int {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			if s.commands[a] {
				return i
			}
			return -1
		}
		name, _, inline := strings.Cut(a, "=")
		takesValue, global := s.globals[name]
		if !global {
			return -1
		}
		if takesValue && !inline {
			i++ // its value, whatever it looks like
		}
	}
	return -1
}

// isHelpOrVersion reports whether args, global flags aside, ask for the
// root's help or version.
func (s cliShape) isHelpOrVersion(args []string) bool {
	for i := 0; i < len(args); i++ {
		name, _, inline := strings.Cut(args[i], "=")
		switch name {
		case "-h", "--help", "--version":
			return true
		}
		takesValue, global := s.globals[name]
		if !global {
			return false
		}
		if takesValue && !inline {
			i++
		}
	}
	return false
}

// normalizeArgs turns the scripts' command lines into cobra's:
//   - a command line with no subcommand ("hck-bpf --live ...") runs scan,
//     so cron lines keep working with only the binary name changed; global
//     flags may come before a subcommand ("hck-bpf -v --pin-dir X list"),
//     which is then the command run;
//   - "--exclude-ports 22 3306 5432" (argparse nargs='+') becomes one
//     --exclude-ports per value.
func normalizeArgs(args []string, shape cliShape) []string {
	at := shape.commandAt(args)
	if at < 0 && len(args) > 0 && strings.HasPrefix(args[0], "-") && !shape.isHelpOrVersion(args) {
		args = append([]string{"scan"}, args...)
		at = 0
	}
	if at < 0 || !sweepCommands[args[at]] {
		return args
	}
	out := append([]string(nil), args[:at+1]...)
	for i := at + 1; i < len(args); i++ {
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
