package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dpopgate/dpopgate/config"
	"github.com/dpopgate/dpopgate/gateway"
)

// serve runs the gateway until ctx ends (SIGINT, SIGTERM), then drains.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	path := fs.String("config", getenv(config.EnvConfigPath), "config `file` (or $"+config.EnvConfigPath+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("serve needs --config FILE (or " + config.EnvConfigPath + ")")
	}
	cfg, err := config.Load(*path, getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	redis.SetLogger(redisLog{log})
	gw, err := gateway.New(cfg, gateway.Options{Logger: log})
	if err != nil {
		return err
	}
	defer gw.Close() // after the servers have drained: Redis last

	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return err
	}
	var adminLn net.Listener
	if cfg.Server.AdminEnabled() {
		if adminLn, err = net.Listen("tcp", cfg.Server.AdminListen); err != nil {
			ln.Close()
			return err
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHUP(ctx, hup, *path, getenv, gw, log)
	return runServers(ctx, cfg, gw, log, ln, adminLn)
}

// reloadOnHUP re-reads the config file on every SIGHUP until ctx ends. A
// file that does not validate, or a change only a restart can make, is
// logged and the running config keeps serving.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, path string, getenv func(string) string, gw *gateway.Gateway, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		cfg, err := config.Load(path, getenv)
		if err == nil {
			err = gw.Reload(cfg)
		}
		if err != nil {
			log.Error("config reload failed; the running config keeps serving", "path", path, "error", err.Error())
			continue
		}
		log.Info("config reloaded", "path", path, "routes", len(cfg.Routes), "issuers", len(cfg.Issuers))
	}
}

// newLogger builds the JSON (or text) slog logger the config asks for.
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(c.Format, "text") {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// serverLog is the log net/http reports its own errors to: a handler's
// panic (a bug) at error level, the rest (TLS handshakes, clients that
// hang up or send garbage) at debug, since any client can cause them.
func serverLog(log *slog.Logger) *stdlog.Logger {
	return stdlog.New(serverLogWriter{log}, "", 0)
}

type serverLogWriter struct{ log *slog.Logger }

func (w serverLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	level := slog.LevelDebug
	if strings.HasPrefix(msg, "http: panic serving") {
		level = slog.LevelError
	}
	w.log.Log(context.Background(), level, msg)
	return len(p), nil
}

// runServers serves the gateway on ln and the admin endpoints on adminLn
// (nil: none) until ctx ends; then it stops accepting, gives in-flight
// requests the configured grace period, and returns.
func runServers(ctx context.Context, cfg *config.Config, gw *gateway.Gateway, log *slog.Logger, ln, adminLn net.Listener) error {
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	go gw.Run(bg)

	s := cfg.Server
	main := &http.Server{
		Handler:           gw,
		ReadHeaderTimeout: time.Duration(s.ReadHeaderTimeout),
		ReadTimeout:       time.Duration(s.ReadTimeout),
		IdleTimeout:       time.Duration(s.IdleTimeout),
		MaxHeaderBytes:    s.MaxHeaderBytes,
		ErrorLog:          serverLog(log),
	}
	servers := []*http.Server{main}
	errc := make(chan error, 2)
	go func() {
		var err error
		if s.TLS.Enabled() {
			err = main.ServeTLS(ln, s.TLS.CertFile, s.TLS.KeyFile)
		} else {
			err = main.Serve(ln)
		}
		errc <- err
	}()
	if adminLn != nil {
		admin := &http.Server{
			Handler:           gw.AdminHandler(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       time.Minute,
			ErrorLog:          serverLog(log),
		}
		servers = append(servers, admin)
		go func() { errc <- admin.Serve(adminLn) }()
		log.Info("admin listening", "addr", adminLn.Addr().String())
	}
	log.Info("gateway listening", "addr", ln.Addr().String(), "routes", len(cfg.Routes), "issuers", len(cfg.Issuers))

	select {
	case err := <-errc:
		return fmt.Errorf("listener stopped: %w", err)
	case <-ctx.Done():
	}
	// Drain: /readyz turns 503 for the load balancer, the gateway takes no
	// new connections, in-flight requests (streams too) get the grace
	// period; the admin listener answers until they are done.
	gw.Drain()
	ln.Close()
	log.Info("draining", "grace", time.Duration(s.ShutdownGrace).String())
	grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(s.ShutdownGrace))
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(grace); err != nil {
			log.Warn("grace period over, closing the connections left", "error", err)
			srv.Close()
		}
	}
	// Upgraded connections (WebSockets) get what is left of the grace
	// period too: Shutdown does not wait for them.
	if err := gw.WaitUpgrades(grace); err != nil {
		log.Warn("grace period over, closing the upgraded connections left", "error", err)
	}
	stopBackground()
	log.Info("stopped")
	return nil
}
