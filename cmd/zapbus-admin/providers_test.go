package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/secretbox"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

func TestProvidersKeygenAndRekey(t *testing.T) {
	ctx := context.Background()
	var out bytes.Buffer
	if err := run(ctx, []string{"providers", "keygen"}, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	newLine := strings.TrimSpace(out.String())
	if _, err := secretbox.Parse(newLine); err != nil || strings.Contains(newLine, ",") {
		t.Fatalf("keygen printed %q: %v", newLine, err)
	}
	oldLine, _ := secretbox.Generate()
	old, _ := secretbox.Parse(oldLine)

	dsn := testenv.Postgres(t)
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m, err := db.Mentorados().Create(ctx, "Ana", []byte("h"))
	if err != nil {
		t.Fatal(err)
	}
	acc := provider.Account{Mentorado: m, Provider: event.ProviderZAPI, ZAPI: &provider.ZAPICredentials{
		InstanceID: "I1", InstanceToken: "tok-SECRET", ClientToken: "client-SECRET"}}
	if err := provider.NewConfigs(db, old).Put(ctx, acc); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": dsn, "ZAPBUS_CREDENTIALS_KEYS": newLine + "," + oldLine}
	getenv := func(k string) string { return env[k] }
	for _, want := range []string{"re-sealed 1 ", "re-sealed 0 "} {
		out.Reset()
		if err := run(ctx, []string{"providers", "rekey"}, getenv, &out); err != nil || !strings.Contains(out.String(), want) {
			t.Fatalf("rekey: %q %v, want %q", out.String(), err, want)
		}
		if strings.Contains(out.String(), "SECRET") || strings.Contains(out.String(), newLine[strings.IndexByte(newLine, ':')+1:]) {
			t.Fatalf("rekey printed a secret: %s", out.String())
		}
	}
	// The old key can go now.
	onlyNew, _ := secretbox.Parse(newLine)
	if got, err := provider.NewConfigs(db, onlyNew).Account(ctx, m, event.ProviderZAPI); err != nil || got.ZAPI.ClientToken != "client-SECRET" {
		t.Fatalf("after rekey with the new key only: %v", err)
	}
	// Without a keyring or a database: errors naming what is missing.
	delete(env, "ZAPBUS_CREDENTIALS_KEYS")
	if err := run(ctx, []string{"providers", "rekey"}, getenv, &out); err == nil || !strings.Contains(err.Error(), "ZAPBUS_CREDENTIALS_KEYS") {
		t.Fatalf("no keyring: %v", err)
	}
	if err := run(ctx, []string{"providers", "rekey"}, func(string) string { return "" }, &out); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("no database: %v", err)
	}
	for _, args := range [][]string{{"providers"}, {"providers", "nope"}, {"providers", "rekey", "x"}} {
		if err := run(ctx, args, func(string) string { return "" }, &out); err == nil || !strings.Contains(err.Error(), "providers rekey") {
			t.Fatalf("%q: %v", args, err)
		}
	}
}
