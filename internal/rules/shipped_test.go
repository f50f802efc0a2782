package rules

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// exampleLine is a commented rule-file line in the shipped examples: "#"
// right before a command, not a sentence.
var exampleLine = regexp.MustCompile(`^#(ip6?tables|ip|forward|forward-with-snat|force-route|add-route|firewall-rule) `)

// TestShippedExamples parses the rule files the packages install, and
// each of their commented examples as the admin would uncomment it.
func TestShippedExamples(t *testing.T) {
	for _, rel := range []string{"firewall/01.accept", "firewall/02.forward", "routes/01.routes"} {
		kind := Firewall
		if strings.HasPrefix(rel, "routes/") {
			kind = Routes
		}
		src, err := os.ReadFile(filepath.Join("..", "..", "distro", "common", "balance", rel))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseFile(rel, kind, src); err != nil {
			t.Errorf("shipped %s: %v", rel, err)
		}
		examples := 0
		for _, line := range strings.Split(string(src), "\n") {
			if !exampleLine.MatchString(line) {
				continue
			}
			examples++
			f, err := ParseFile(rel, kind, []byte(line[1:]))
			if err != nil || len(f.Lines) != 1 || f.Lines[0].kind == lkCommand {
				t.Errorf("shipped %s: example %q does not read as a rule line: %v", rel, line, err)
			}
		}
		if examples == 0 {
			t.Errorf("shipped %s: no commented examples found", rel)
		}
	}
}
