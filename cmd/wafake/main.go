// Command wafake runs the fake WhatsApp server (internal/wafake) as its own
// process, for the staging stack and the chaos run (docs/staging.md). It is
// dev-only: nothing in production starts it, and a connector talks to it
// only when given both its address and its root key
// (ZAPBUS_WA_FAKE_ADDR, ZAPBUS_WA_FAKE_ROOT_KEY).
//
// Settings come from the environment, overridable by flags:
//
//	WAFAKE_ADDR            chat websocket and media CDN, default 127.0.0.1:5290
//	WAFAKE_CONTROL_ADDR    control API (loopback only), default 127.0.0.1:5291
//	WAFAKE_ROOT_KEY_FILE   the certificate root's private key (hex); created when missing,
//	                       default wafake-root.key
//	WAFAKE_TOKEN (or WAFAKE_TOKEN_FILE)  bearer token of the control API; generated
//	                       and printed once when unset
//	ZAPBUS_LOG_LEVEL       debug (every stanza), info (default), warn, error
//
// At start it prints the root's public key: give it to the connector as
// ZAPBUS_WA_FAKE_ROOT_KEY (wafake -print-root-key prints it and exits, for
// configuring the connectors before the fake runs). The control API (JSON, Authorization: Bearer)
// drives the fake phones: see control.go and docs/staging.md.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/zapbus/zapbus/internal/config"
	"github.com/zapbus/zapbus/internal/wafake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "wafake:", err)
		os.Exit(1)
	}
}

type settings struct {
	Addr        string
	ControlAddr string
	RootKeyFile string
	Token       string
	LogLevel    zerolog.Level
	PrintRoot   bool // -print-root-key: create or read the key file, print the public key, exit
}

func loadSettings(args []string, getenv func(string) string, stderr io.Writer) (settings, error) {
	var s settings
	env := config.NewEnv(getenv)
	fs := flag.NewFlagSet("wafake", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.Addr, "addr", env.String("WAFAKE_ADDR", "127.0.0.1:5290"), "chat and media listener (WAFAKE_ADDR)")
	fs.StringVar(&s.ControlAddr, "control-addr", env.String("WAFAKE_CONTROL_ADDR", "127.0.0.1:5291"), "control API, loopback only (WAFAKE_CONTROL_ADDR)")
	fs.StringVar(&s.RootKeyFile, "root-key-file", env.String("WAFAKE_ROOT_KEY_FILE", "wafake-root.key"), "root private key file, created when missing (WAFAKE_ROOT_KEY_FILE)")
	fs.BoolVar(&s.PrintRoot, "print-root-key", false, "create or read the root key file, print its public key (ZAPBUS_WA_FAKE_ROOT_KEY) and exit")
	level := fs.String("log-level", env.String("ZAPBUS_LOG_LEVEL", "info"), "log level (ZAPBUS_LOG_LEVEL)")
	s.Token = env.String("WAFAKE_TOKEN", "")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if err := env.Err(); err != nil {
		return s, err
	}
	lvl, err := config.LogLevel(*level)
	if err != nil {
		return s, err
	}
	s.LogLevel = lvl
	if err := loopbackOnly(s.ControlAddr); err != nil {
		return s, fmt.Errorf("WAFAKE_CONTROL_ADDR: %w", err)
	}
	if s.RootKeyFile == "" {
		return s, errors.New("WAFAKE_ROOT_KEY_FILE is required")
	}
	return s, nil
}

// loopbackOnly refuses a control address other machines could reach: the
// control API makes anyone a WhatsApp user of every paired account.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port", addr)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: the control API binds to loopback only", addr)
	}
	return nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	s, err := loadSettings(args, getenv, stdout)
	if err != nil {
		return err
	}
	log := zerolog.New(stdout).Level(s.LogLevel).With().Timestamp().Str("service", "wafake").Logger()
	priv, err := wafake.LoadOrCreateRootKey(s.RootKeyFile)
	if err != nil {
		return err
	}
	if s.PrintRoot {
		fmt.Fprintln(stdout, hex.EncodeToString(keys.NewKeyPairFromPrivateKey(priv).Pub[:]))
		return nil
	}
	if err := wafake.InstallRootKey(priv); err != nil {
		return err
	}
	generated := false
	if s.Token == "" {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return fmt.Errorf("control token: %w", err)
		}
		s.Token, generated = "wft_"+hex.EncodeToString(b), true
	}
	fake, err := wafake.NewServerAt(log, s.Addr)
	if err != nil {
		return err
	}
	defer fake.Close()
	ln, err := net.Listen("tcp", s.ControlAddr)
	if err != nil {
		return fmt.Errorf("WAFAKE_CONTROL_ADDR: listen: %w", err)
	}
	ctl := newControl(fake, s.Token, log)
	srv := &http.Server{Handler: ctl.routes(), ReadHeaderTimeout: 5 * time.Second}
	root := wafake.RootPublicKey()
	log.Warn().Str("addr", fake.Addr()).Str("control", ln.Addr().String()).
		Str("root_public_key", hex.EncodeToString(root[:])).
		Msg("FAKE WhatsApp server (dev only): connectors given ZAPBUS_WA_FAKE_ADDR and ZAPBUS_WA_FAKE_ROOT_KEY talk to it")
	fmt.Fprintf(stdout, "wafake is up\n  chat/media:      %s\n  control:         http://%s\n  root public key: %s\n",
		fake.Addr(), ln.Addr(), hex.EncodeToString(root[:]))
	if generated {
		fmt.Fprintf(stdout, "  control token:   %s\n", s.Token)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("control API: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}
