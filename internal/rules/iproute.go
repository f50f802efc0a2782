package rules

import (
	"errors"
	"fmt"
	"strings"
)

// IPCommand is an `ip route` or `ip rule` change for the planner to make
// over netlink.
type IPCommand struct {
	Pos Pos
	// Directive is the directive that produced the command, "" for an
	// ip line.
	Directive string
	// Family is what -4 or -6 said, AnyFamily when neither was given.
	Family Family
	Op     string // add, replace, append or del
	Args   []string
}

// Argv returns the command as arguments for `ip route` or `ip rule`.
func (c IPCommand) Argv() []string { return append([]string{c.Op}, c.Args...) }

// ipObject recognises the object word of an `ip` command line, after
// the family options -4 and -6 (the last one counts, as for iproute2).
// iproute2 accepts any prefix of the object name; "r" means route. ok is
// false for every other `ip` command, which is then run as a plain
// command.
func ipObject(args []string) (object string, family Family, rest []string, ok bool) {
	for len(args) > 0 && (args[0] == "-4" || args[0] == "-6") {
		family = IPv4
		if args[0] == "-6" {
			family = IPv6
		}
		args = args[1:]
	}
	if len(args) == 0 {
		return "", family, nil, false
	}
	switch a := args[0]; {
	case a != "" && strings.HasPrefix("route", a):
		return "route", family, args[1:], true
	case len(a) >= 2 && strings.HasPrefix("rule", a):
		return "rule", family, args[1:], true
	}
	return "", family, nil, false
}

// ipOps are the subcommands a rule file may use. `ip rule` has no replace
// or append; flush, show and the like are not changes, or would remove
// other software's routes, which ispbalance promises to leave alone.
var ipOps = map[string]map[string]string{
	"route": {"add": "add", "replace": "replace", "append": "append", "del": "del", "delete": "del"},
	"rule":  {"add": "add", "del": "del", "delete": "del"},
}

// parseIP reads `ip route|rule OP ARGS...` (without the program name).
func parseIP(args []string) (object string, cmd IPCommand, err error) {
	object, family, rest, ok := ipObject(args)
	if !ok {
		return "", IPCommand{}, errors.New("not an ip route or ip rule command")
	}
	if len(rest) == 0 {
		return "", IPCommand{}, fmt.Errorf("ip %s: missing subcommand (add or del)", object)
	}
	op, ok := ipOps[object][rest[0]]
	if !ok {
		allowed := "add, replace, append or del"
		if object == "rule" {
			allowed = "add or del"
		}
		return "", IPCommand{}, fmt.Errorf("ip %s %s is not allowed in a rule file: use %s", object, rest[0], allowed)
	}
	if object == "route" && len(rest) == 1 {
		return "", IPCommand{}, fmt.Errorf("ip route %s: missing destination", rest[0])
	}
	return object, IPCommand{Family: family, Op: op, Args: rest[1:]}, nil
}
