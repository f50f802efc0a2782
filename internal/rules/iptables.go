package rules

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/ispbalance/ispbalance/internal/kernelnames"
)

// IPTablesRule is one iptables rule for the planner's transaction of
// Table. Chain is as the user wrote it: a built-in chain or one of the
// user's own.
type IPTablesRule struct {
	Pos Pos
	// IPv6 says the rule is for ip6tables.
	IPv6 bool
	// Directive is the directive that produced the rule, "" for an
	// iptables line.
	Directive string
	Table     string // filter, nat, mangle or raw
	Op        string // -A, -I, -D, -F or -X
	Chain     string
	// Num is the rule number given to -I or -D, 0 if none.
	Num  int
	Args []string
}

// Argv returns the rule as iptables arguments.
func (r IPTablesRule) Argv() []string {
	argv := []string{"-t", r.Table, r.Op, r.Chain}
	if r.Num > 0 {
		argv = append(argv, strconv.Itoa(r.Num))
	}
	return append(argv, r.Args...)
}

// Chain is a user chain created with -N.
type Chain struct {
	Pos   Pos
	IPv6  bool // created by ip6tables
	Table string
	Name  string
}

// builtinChains lists each table's built-in chains.
var builtinChains = map[string][]string{
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	"raw":    {"PREROUTING", "OUTPUT"},
}

func isBuiltin(chain string) bool {
	for _, cs := range builtinChains {
		if slices.Contains(cs, chain) {
			return true
		}
	}
	return false
}

// iptablesOps maps each operation flag to its short form.
var iptablesOps = map[string]string{
	"-A": "-A", "--append": "-A",
	"-I": "-I", "--insert": "-I",
	"-D": "-D", "--delete": "-D",
	"-N": "-N", "--new-chain": "-N", "--new": "-N",
	"-F": "-F", "--flush": "-F",
	"-X": "-X", "--delete-chain": "-X",
	"-P": "-P", "--policy": "-P",
	"-R": "-R", "--replace": "-R",
	"-E": "-E", "--rename-chain": "-E",
	"-C": "-C", "--check": "-C",
	"-L": "-L", "--list": "-L",
	"-S": "-S", "--list-rules": "-S",
	"-Z": "-Z", "--zero": "-Z",
}

// isOpFlag reports whether a is an iptables operation or table option,
// which only the line's own syntax (not a directive's arguments) may
// give.
func isOpFlag(a string) bool {
	name, _, _ := strings.Cut(a, "=")
	if _, ok := iptablesOps[name]; ok {
		return true
	}
	return name == "-t" || name == "--table" || strings.HasPrefix(a, "-t") && !strings.HasPrefix(a, "--")
}

// iptables is a parsed iptables command line.
type iptables struct {
	rule     IPTablesRule
	newChain bool // rule.Op was -N: rule.Chain is to be created
}

// parseIPTables reads the arguments of an iptables command (without the
// program name). Only what makes sense inside the planner's atomic
// transaction is accepted: the planner owns policies and built-in chains,
// and queries have no place in a plan.
func parseIPTables(args []string) (iptables, error) {
	var (
		table, op, chain string
		num              int
		rest             []string
	)
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		if !strings.HasPrefix(a, "--") {
			name, val, hasVal = a, "", false
		}
		next := func() (string, error) {
			if hasVal {
				return val, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("iptables %s needs an argument", a)
			}
			i++
			return args[i], nil
		}
		switch {
		case name == "-t" || name == "--table" || strings.HasPrefix(a, "-t") && !strings.HasPrefix(a, "--"):
			if table != "" {
				return iptables{}, errors.New("iptables: more than one -t")
			}
			var err error
			if len(a) > 2 && !strings.HasPrefix(a, "--") {
				table = a[2:]
			} else if table, err = next(); err != nil {
				return iptables{}, err
			}
			if _, ok := builtinChains[table]; !ok {
				return iptables{}, fmt.Errorf("iptables: unknown table %q (tables: filter, nat, mangle, raw)", table)
			}
		case iptablesOps[name] != "":
			if op != "" {
				return iptables{}, fmt.Errorf("iptables: more than one operation (%s and %s)", op, iptablesOps[name])
			}
			op = iptablesOps[name]
			// The chain is optional for -F, -X, -L, -S and -Z.
			if hasVal || i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				c, err := next()
				if err != nil {
					return iptables{}, err
				}
				chain = c
			}
			if (op == "-I" || op == "-D") && i+1 < len(args) {
				if n, err := strconv.Atoi(args[i+1]); err == nil {
					if n < 1 {
						return iptables{}, fmt.Errorf("iptables %s: rule number %d must be 1 or more", op, n)
					}
					num = n
					i++
				}
			}
		case name == "-w" || name == "--wait":
			// Waiting for the xtables lock means nothing inside a
			// restore transaction; iptables-restore refuses it.
			if !hasVal && i+1 < len(args) {
				if _, err := strconv.ParseFloat(args[i+1], 64); err == nil {
					i++
				}
			}
		case name == "-W" || name == "--wait-interval":
			if _, err := next(); err != nil {
				return iptables{}, err
			}
		case isJump(a) && (hasVal || !strings.HasPrefix(a, "--") && len(a) > 2):
			// getopt also reads "-jX" and "--jump=X"; split them so
			// that the target is checked, and renamed when it is one
			// of the file's own chains, as with "-j X".
			if hasVal {
				rest = append(rest, name, val)
			} else {
				rest = append(rest, a[:2], a[2:])
			}
		default:
			rest = append(rest, a)
		}
	}
	if table == "" {
		table = "filter"
	}
	if op == "" {
		return iptables{}, errors.New("iptables: no operation (-A, -I, -D, -N, -F or -X)")
	}
	switch op {
	case "-P":
		return iptables{}, errors.New("iptables -P: chain policies belong to ispbalance, which keeps its firewall default-deny")
	case "-L", "-S", "-C", "-Z":
		return iptables{}, fmt.Errorf("iptables %s is a query, not a rule; run it from post-run/ if you need it", op)
	case "-R", "-E":
		return iptables{}, fmt.Errorf("iptables %s is not supported in a rule file; use -D and -A or -I", op)
	}
	if chain == "" {
		if op == "-F" || op == "-X" {
			return iptables{}, fmt.Errorf("iptables %s without a chain would remove ispbalance's rules; name one of your own chains", op)
		}
		return iptables{}, fmt.Errorf("iptables %s: missing chain", op)
	}
	if err := checkChainName(chain, maxUserChain); err != nil {
		return iptables{}, err
	}
	builtin := isBuiltin(chain)
	switch {
	case builtin && (op == "-F" || op == "-X"):
		return iptables{}, fmt.Errorf("iptables %s %s: built-in chains belong to ispbalance", op, chain)
	case builtin && op == "-N":
		return iptables{}, fmt.Errorf("iptables -N %s: %s is a built-in chain", chain, chain)
	case builtin && !slices.Contains(builtinChains[table], chain):
		return iptables{}, fmt.Errorf("iptables: table %s has no chain %s", table, chain)
	}
	// A word that is no option's value is what iptables calls a bad
	// argument; kept, it would turn into the rule number of -I or -D
	// once the rule is written out with the chain first.
	if (op == "-A" || op == "-I" || op == "-D") && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") && rest[0] != "!" {
		return iptables{}, fmt.Errorf("iptables %s %s: unexpected argument %q", op, chain, rest[0])
	}
	if (op == "-N" || op == "-F" || op == "-X") && len(rest) > 0 {
		return iptables{}, fmt.Errorf("iptables %s %s: unexpected arguments %s", op, chain, Quote(rest))
	}
	if op == "-D" && num > 0 && len(rest) > 0 {
		return iptables{}, fmt.Errorf("iptables -D %s %d: give a rule number or a rule, not both", chain, num)
	}
	for i, a := range rest {
		if isJump(a) && i+1 < len(rest) {
			if err := checkChainName(rest[i+1], kernelnames.MaxChainName); err != nil {
				return iptables{}, err
			}
		}
	}
	r := IPTablesRule{Table: table, Op: op, Chain: chain, Num: num, Args: rest}
	if op == "-N" {
		return iptables{rule: r, newChain: true}, nil
	}
	return iptables{rule: r}, nil
}

// isJump reports whether a is a -j or -g option, in any spelling getopt
// reads: "-j", "-jX", "--jump", "--jump=X" (and the same for goto).
func isJump(a string) bool {
	name, _, _ := strings.Cut(a, "=")
	if strings.HasPrefix(a, "--") {
		return name == "--jump" || name == "--goto"
	}
	return strings.HasPrefix(a, "-j") || strings.HasPrefix(a, "-g")
}

// maxUserChain bounds the names of the chains a rule file creates or adds
// to: each becomes kernelnames.UserChain(name), which must still fit
// iptables' limit.
const maxUserChain = kernelnames.MaxChainName - len(kernelnames.UserChainPrefix)

// checkChainName refuses ispbalance's own chains: they are rebuilt from
// scratch on every run, so a user rule in or aimed at them would vanish
// or dangle. It also refuses names longer than max, and names that
// iptables-restore, which reads chain names as words of a line, would not
// read back as written.
func checkChainName(chain string, max int) error {
	if strings.HasPrefix(chain, kernelnames.ChainPrefix) {
		return fmt.Errorf("iptables: chain %s belongs to ispbalance (prefix %s)", chain, kernelnames.ChainPrefix)
	}
	if len(chain) > max {
		if max < kernelnames.MaxChainName {
			return fmt.Errorf("iptables: chain name %q is longer than %d characters (it is kept as %s%s, and iptables allows %d)",
				chain, max, kernelnames.UserChainPrefix, chain, kernelnames.MaxChainName)
		}
		return fmt.Errorf("iptables: chain name %q is longer than %d characters", chain, max)
	}
	if strings.ContainsFunc(chain, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == '"' || r == '\'' || r == '\\'
	}) {
		return fmt.Errorf("iptables: chain name %q contains white space, a control character or a quote", chain)
	}
	// iptables' own rule; "--append=-x" would otherwise get one through.
	if strings.HasPrefix(chain, "-") || strings.HasPrefix(chain, "!") {
		return fmt.Errorf("iptables: chain name %q starts with %q", chain, chain[:1])
	}
	return nil
}
