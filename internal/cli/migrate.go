package cli

import (
	"fmt"
	"os"

	"github.com/ispbalance/ispbalance/internal/rules"
)

// runMigrate is `ifup-balance migrate FILE.pl`: it prints a rule file
// equivalent to the $B calls it recognises, with every statement it
// could not translate marked in the output and listed on stderr.
func runMigrate(env Env, path string) int {
	src, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(env.Stderr, "ifup-balance: migrate: %v\n", err)
		return 1
	}
	out, missing := rules.Migrate(path, src)
	fmt.Fprint(env.Stdout, out)
	for _, u := range missing {
		fmt.Fprintf(env.Stderr, "%s:%d: not translated: %s\n", path, u.Line, u.Reason)
	}
	return 0
}
