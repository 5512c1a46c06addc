// Command dpopgate is the resource-server half of OAuth 2.1 + DPoP as a
// reverse proxy. Run "dpopgate help" for its commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// defaultGOGC is the garbage collector's target when GOGC is not set: a
// gateway's live heap is small (caches and buckets, tens of MB), so
// letting it grow 5x between collections costs little memory and saves
// much of the per-request GC work. GOGC and GOMEMLIMIT in the environment
// override it, as for any Go program.
const defaultGOGC = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	argv0 = os.Args[0]
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "dpopgate:", err)
		os.Exit(1)
	}
}

const usage = `dpopgate: the resource-server half of OAuth 2.1 + DPoP, as a reverse proxy

  dpopgate dev                       everything in one process for a first try
  dpopgate serve --config FILE       the gateway
  dpopgate check-config --config FILE
  dpopgate keygen [--alg ES256]      a DPoP key pair (private JWK) on stdout
  dpopgate proof --key FILE --method M --url U [--token T] [--nonce N]
  dpopgate token --issuer URL --client-id ID [--client-secret S] --key FILE [--scope S] [--resource R]
  dpopgate register --issuer URL [--name N] [--scope S]   RFC 7591 dynamic client registration
  dpopgate bench [flags]             the load tool
  dpopgate version
`

// run is the whole command: args without the program name, the
// environment, and where to write. It returns instead of exiting, so tests
// call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, getenv, stdout, stderr)
	case "dev":
		return dev(ctx, rest, stdout, stderr)
	case "keygen":
		return keygen(rest, stdout, stderr)
	case "proof":
		return proof(rest, stdout, stderr)
	case "token":
		return token(ctx, rest, stdout, stderr)
	case "register":
		return register(ctx, rest, stdout, stderr)
	case "bench":
		return bench(ctx, rest, stdout, stderr)
	case "bench-bare": // a child of bench: the baseline proxy
		return benchBare(ctx, rest, stderr)
	case "check-config":
		return checkConfig(rest, getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// Set by the build (-ldflags "-X main.version=... -X main.commit=...").
var (
	version = "dev"
	commit  = ""
)

func versionString() string {
	c, goVersion := commit, "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && c == "" {
				c = s.Value
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("dpopgate %s (commit %s, %s)", version, c, goVersion)
}

// newFlags returns a flag set that reports errors as values, not exits.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("dpopgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}
