package core

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"time"

	"github.com/ispbalance/ispbalance/internal/plan"
	"github.com/ispbalance/ispbalance/internal/render"
)

// commandTimeout bounds each rule-file command, so a hanging command
// cannot hold the rebuild lock for long.
const commandTimeout = 20 * time.Second

// runCommands runs rule-file commands in order, each on its own without
// a shell and with a time limit. A failing command is reported and the
// rest still run: they are the admin's additions around an applied plan,
// which stays applied.
func runCommands(ctx context.Context, opts Options, stage string, cmds []plan.Command) {
	for _, c := range cmds {
		cctx, cancel := context.WithTimeout(ctx, commandTimeout)
		cmd := exec.CommandContext(cctx, c.Argv[0], c.Argv[1:]...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = time.Second
		if opts.Echo != nil {
			opts.Echo.Write([]byte("[#] " + render.ShellQuote(c.Argv) + "\n"))
		}
		err := cmd.Run()
		switch {
		case cctx.Err() == context.DeadlineExceeded:
			opts.Log.Warn(stage+" command killed after its time limit", "at", c.Origin, "limit", commandTimeout)
		case err != nil:
			opts.Log.Warn(stage+" command failed", "at", c.Origin, "err", err, "output", strings.TrimSpace(out.String()))
		}
		cancel()
	}
}
