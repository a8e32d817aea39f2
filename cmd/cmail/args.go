package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// usageError is a wrong invocation: exit status 2 and the command's usage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errHelp asks for the usage text on standard output and exit status 0.
var errHelp = errors.New("help requested")

// stringList is a flag that may be given several times, each value possibly a
// comma-separated list (--to a,b --to c).
type stringList struct {
	vals  []string
	split bool
}

func (l *stringList) String() string { return strings.Join(l.vals, ",") }

func (l *stringList) Set(v string) error {
	if !l.split {
		l.vals = append(l.vals, v)
		return nil
	}
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			l.vals = append(l.vals, p)
		}
	}
	return nil
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

type boolFlag interface{ IsBoolFlag() bool }

// parseArgs parses flags anywhere among the arguments (before, between or after the
// positional ones), with one or two dashes; "--" ends the flags. An argument that
// positional reports true for is positional even if it starts with a dash (the -seen of
// cmail flag).
func parseArgs(fs *flag.FlagSet, args []string, positional func(string) bool) ([]string, error) {
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(pos, args[i+1:]...), nil
		}
		if len(a) < 2 || a[0] != '-' || (positional != nil && positional(a)) {
			pos = append(pos, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "h" || name == "help" {
			return nil, errHelp
		}
		f := fs.Lookup(name)
		if f == nil {
			return nil, usagef("unknown flag %s", clip(a, 40))
		}
		chunk := []string{a}
		if bf, ok := f.Value.(boolFlag); !hasValue && !(ok && bf.IsBoolFlag()) {
			if i+1 == len(args) {
				return nil, usagef("flag %s needs a value", a)
			}
			i++
			chunk = append(chunk, args[i])
		}
		if err := fs.Parse(chunk); err != nil {
			return nil, usagef("%v", err)
		}
	}
	return pos, nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
