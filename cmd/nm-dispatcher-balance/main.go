// Command nm-dispatcher-balance is ispbalance's NetworkManager dispatcher
// hook: NetworkManager runs it with an interface and an action, and it
// hands link and DHCP changes of configured devices to ispbalance. See
// nm-dispatcher-balance(8).
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
	os.Exit(cli.NMDispatcher(ctx, cli.Env{Args: os.Args[1:], Stdout: os.Stdout, Stderr: os.Stderr}))
}
