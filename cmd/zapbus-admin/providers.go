package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/zapbus/zapbus/internal/config"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/secretbox"
	"github.com/zapbus/zapbus/internal/store"
)

// runProviders runs `zapbus-admin providers keygen|rekey` (issue #16).
func runProviders(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) != 1 {
		return errors.New(usage)
	}
	switch args[0] {
	case "keygen":
		line, err := secretbox.Generate()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, line)
		return err
	case "rekey":
		return rekey(ctx, getenv, stdout)
	}
	return errors.New(usage)
}

// rekey re-seals every stored credential not sealed with the primary key.
func rekey(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	env := config.NewEnv(getenv)
	dsn := env.String("DATABASE_URL", "")
	if err := env.Err(); err != nil {
		return err
	}
	if dsn == "" {
		return errors.New("providers rekey: DATABASE_URL is required")
	}
	keys, err := secretbox.Load(getenv)
	if err != nil {
		return fmt.Errorf("providers rekey: %w", err)
	}
	db, err := store.Open(ctx, dsn)
	if err != nil {
		return fmt.Errorf("providers rekey: %w", err)
	}
	defer db.Close()
	n, err := provider.NewConfigs(db, keys).Rekey(ctx)
	if err != nil {
		return fmt.Errorf("providers rekey: %d re-sealed before: %w", n, err)
	}
	_, err = fmt.Fprintf(stdout, "re-sealed %d provider credentials with key %s\n", n, keys.Primary())
	return err
}
