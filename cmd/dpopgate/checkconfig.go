package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/dpopgate/dpopgate/config"
)

// checkConfig validates a config file: every problem on its own line, with
// the key path and line, and a non-nil error (exit 1) when there is one.
func checkConfig(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("check-config", stderr)
	path := fs.String("config", getenv(config.EnvConfigPath), "config `file` (or $"+config.EnvConfigPath+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("check-config needs --config FILE (or " + config.EnvConfigPath + ")")
	}
	cfg, err := config.Load(*path, getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return errors.New("config is not valid")
	}
	fmt.Fprintf(stdout, "%s: ok (%d routes, %d issuers, replay %s, rate limits %s)\n",
		*path, len(cfg.Routes), len(cfg.Issuers), cfg.Replay.Backend, cfg.RateLimits.Backend)
	return nil
}
