// Command ifup-balance rebuilds multi-ISP balancing and the firewall on a
// Linux router from balance.conf. See ifup-balance -h.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ispbalance/ispbalance/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(cli.Run(ctx, cli.Env{Args: os.Args[1:], Stdout: os.Stdout, Stderr: os.Stderr}))
}
