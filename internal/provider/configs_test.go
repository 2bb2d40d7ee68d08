package provider_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/secretbox"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

const (
	keyA = "ka:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
	keyB = "kb:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
)

func keyring(t *testing.T, line string) *secretbox.Keyring {
	t.Helper()
	k, err := secretbox.Parse(line)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openDB(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func mentorado(t *testing.T, db *store.DB, name string) int64 {
	t.Helper()
	id, err := db.Mentorados().Create(context.Background(), name, []byte("hash-"+name))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func metaAccount(m int64, phoneID string) provider.Account {
	return provider.Account{Mentorado: m, Provider: event.ProviderMeta, Meta: &provider.MetaCredentials{
		PhoneNumberID: phoneID, WABAID: "102290129340398", DisplayPhone: "5511999990000",
		AccessToken: "EAAG-access-SECRET", AppSecret: "app-SECRET-hex", VerifyToken: "verify-SECRET"}}
}

func zapiAccount(m int64, instance string) provider.Account {
	return provider.Account{Mentorado: m, Provider: event.ProviderZAPI, ZAPI: &provider.ZAPICredentials{
		InstanceID: instance, InstanceToken: "instance-SECRET", ClientToken: "client-SECRET"}}
}

func TestConfigsPutAccountAndListHideSecrets(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	c := provider.NewConfigs(db, keyring(t, keyA))
	a := mentorado(t, db, "Ana")

	if err := c.Put(ctx, metaAccount(a, "106540352242922")); err != nil {
		t.Fatal(err)
	}
	z := zapiAccount(a, "3C01A2B3C4D5")
	if err := c.Put(ctx, z); err != nil {
		t.Fatal(err)
	}
	if len(z.ZAPI.WebhookSecret) != 43 { // 32 bytes, unpadded base64url
		t.Fatalf("generated webhook secret %d chars", len(z.ZAPI.WebhookSecret))
	}

	acc, err := c.Account(ctx, a, event.ProviderMeta)
	if err != nil {
		t.Fatal(err)
	}
	if *acc.Meta != *metaAccount(a, "106540352242922").Meta {
		t.Fatalf("meta account %+v", acc.Meta)
	}
	acc, err = c.Account(ctx, a, event.ProviderZAPI)
	if err != nil || acc.ZAPI.ClientToken != "client-SECRET" || acc.ZAPI.WebhookSecret != z.ZAPI.WebhookSecret {
		t.Fatalf("zapi account %v %v", acc, err)
	}
	if strings.Contains(acc.String(), "SECRET") {
		t.Fatalf("String shows a secret: %s", acc)
	}
	web, err := c.Account(ctx, a, event.ProviderWeb)
	if err != nil || web.Meta != nil || web.ZAPI != nil || web.Provider != event.ProviderWeb {
		t.Fatalf("whatsapp_web account %+v %v", web, err)
	}
	b := mentorado(t, db, "Bia")
	if _, err := c.Account(ctx, b, event.ProviderMeta); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unconfigured: %v", err)
	}

	// Stored sealed: the row holds no secret in the clear.
	var raw []byte
	var settings string
	if err := db.Pool.QueryRow(ctx, `SELECT credentials, settings::text FROM provider_configs WHERE mentorado_id = $1 AND provider = 'meta'`, a).Scan(&raw, &settings); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "SECRET") || strings.Contains(settings, "SECRET") || !strings.Contains(settings, "106540352242922") {
		t.Fatalf("row: %q settings %s", raw, settings)
	}

	ov, err := c.List(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(ov)
	for _, secret := range []string{"SECRET", z.ZAPI.WebhookSecret} {
		if strings.Contains(string(js), secret) {
			t.Fatalf("list view shows %q: %s", secret, js)
		}
	}
	if ov.Active != event.ProviderMeta || len(ov.Providers) != 3 || !ov.Providers[0].Active || ov.Providers[1].Active ||
		!strings.Contains(string(js), `"instance_id":"3C01A2B3C4D5"`) {
		t.Fatalf("overview %s", js)
	}

	// A sealed blob moved to another mentorado's row does not open.
	if err := c.Put(ctx, metaAccount(b, "106540352242923")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE provider_configs SET credentials = (SELECT credentials FROM provider_configs WHERE mentorado_id = $1 AND provider = 'meta')
WHERE mentorado_id = $2 AND provider = 'meta'`, a, b); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Account(ctx, b, event.ProviderMeta); !errors.Is(err, secretbox.ErrOpen) {
		t.Fatalf("moved credentials: %v", err)
	}
}

func TestConfigsValidationAndErrors(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	c := provider.NewConfigs(db, keyring(t, keyA))
	a, b := mentorado(t, db, "Ana"), mentorado(t, db, "Bia")

	for _, tc := range []struct {
		field string
		mod   func(*provider.Account)
	}{
		{"phone_number_id", func(a *provider.Account) { a.Meta.PhoneNumberID = "12a" }},
		{"phone_number_id", func(a *provider.Account) { a.Meta.PhoneNumberID = "" }},
		{"waba_id", func(a *provider.Account) { a.Meta.WABAID = "x" }},
		{"display_phone", func(a *provider.Account) { a.Meta.DisplayPhone = "+5511999990000" }},
		{"access_token", func(a *provider.Account) { a.Meta.AccessToken = " " }},
		{"app_secret", func(a *provider.Account) { a.Meta.AppSecret = "" }},
		{"verify_token", func(a *provider.Account) { a.Meta.VerifyToken = "a b" }},
	} {
		acc := metaAccount(a, "1065")
		tc.mod(&acc)
		var fe *provider.FieldError
		if err := c.Put(ctx, acc); !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: %v", tc.field, err)
		} else if strings.Contains(fe.Error(), "SECRET") {
			t.Errorf("field error shows a value: %v", fe)
		}
	}
	for _, tc := range []struct {
		field string
		mod   func(*provider.Account)
	}{
		{"instance_id", func(a *provider.Account) { a.ZAPI.InstanceID = "" }},
		{"instance_id", func(a *provider.Account) { a.ZAPI.InstanceID = "../x" }},
		{"instance_token", func(a *provider.Account) { a.ZAPI.InstanceToken = "" }},
		{"client_token", func(a *provider.Account) { a.ZAPI.ClientToken = "" }},
	} {
		acc := zapiAccount(a, "INST1")
		tc.mod(&acc)
		var fe *provider.FieldError
		if err := c.Put(ctx, acc); !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: %v", tc.field, err)
		}
	}
	// One mentorado per number.
	if err := c.Put(ctx, metaAccount(a, "555")); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, metaAccount(b, "555")); !errors.Is(err, store.ErrExternalIDTaken) {
		t.Fatalf("number of another mentorado: %v", err)
	}
	if err := c.Put(ctx, metaAccount(a, "555")); err != nil { // its own again: fine
		t.Fatal(err)
	}
	if err := c.Put(ctx, metaAccount(999999, "556")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no mentorado: %v", err)
	}
	// Without a keyring only whatsapp_web goes.
	nokeys := provider.NewConfigs(db, nil)
	if err := nokeys.Put(ctx, metaAccount(b, "557")); !errors.Is(err, provider.ErrNoKeyring) {
		t.Fatalf("no keyring put: %v", err)
	}
	if _, err := nokeys.Account(ctx, a, event.ProviderMeta); !errors.Is(err, provider.ErrNoKeyring) {
		t.Fatalf("no keyring account: %v", err)
	}
	if err := nokeys.Put(ctx, provider.Account{Mentorado: b, Provider: event.ProviderWeb}); err != nil {
		t.Fatalf("whatsapp_web without keyring: %v", err)
	}
	// Override only a configured provider.
	if err := c.SetOverride(ctx, b, event.ProviderZAPI); !errors.Is(err, provider.ErrNotConfigured) {
		t.Fatalf("override unconfigured: %v", err)
	}
	if err := c.SetOverride(ctx, 999999, event.ProviderWeb); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("override no mentorado: %v", err)
	}
	if _, err := c.List(ctx, 999999); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("list no mentorado: %v", err)
	}
}

func TestConfigsPriorityAndOverride(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	c := provider.NewConfigs(db, keyring(t, keyA))
	a := mentorado(t, db, "Ana")
	active := func(want event.Provider) {
		t.Helper()
		got, err := c.Active(ctx, a)
		if err != nil || got != want {
			t.Fatalf("active %q %v, want %q", got, err, want)
		}
		ov, err := c.List(ctx, a)
		if err != nil || ov.Active != want {
			t.Fatalf("list active %q %v, want %q", ov.Active, err, want)
		}
	}
	active(event.ProviderWeb) // a new mentorado runs on WhatsApp Web
	if err := c.Put(ctx, zapiAccount(a, "INST1")); err != nil {
		t.Fatal(err)
	}
	active(event.ProviderWeb) // whatsapp_web > zapi
	if err := c.Put(ctx, metaAccount(a, "777")); err != nil {
		t.Fatal(err)
	}
	active(event.ProviderMeta) // meta + whatsapp_web → meta
	if err := c.SetOverride(ctx, a, event.ProviderZAPI); err != nil {
		t.Fatal(err)
	}
	active(event.ProviderZAPI)
	if ov, _ := c.List(ctx, a); ov.Override != event.ProviderZAPI {
		t.Fatalf("override %q", ov.Override)
	}
	if err := c.SetOverride(ctx, a, ""); err != nil {
		t.Fatal(err)
	}
	active(event.ProviderMeta)
	if ok, err := c.Delete(ctx, a, event.ProviderMeta); !ok || err != nil {
		t.Fatalf("delete meta %v %v", ok, err)
	}
	active(event.ProviderWeb) // meta removed → whatsapp_web
	if ok, _ := c.Delete(ctx, a, event.ProviderMeta); ok {
		t.Fatal("deleted meta twice")
	}
	// An override whose provider is removed falls back to the rule.
	if err := c.SetOverride(ctx, a, event.ProviderZAPI); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, a, event.ProviderZAPI); err != nil {
		t.Fatal(err)
	}
	active(event.ProviderWeb)
	if _, err := c.Delete(ctx, a, event.ProviderWeb); err != nil {
		t.Fatal(err)
	}
	active("")
}

func TestConfigsRekey(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	old := provider.NewConfigs(db, keyring(t, keyA))
	a, b := mentorado(t, db, "Ana"), mentorado(t, db, "Bia")
	if err := old.Put(ctx, metaAccount(a, "101")); err != nil {
		t.Fatal(err)
	}
	if err := old.Put(ctx, zapiAccount(b, "INSTB")); err != nil {
		t.Fatal(err)
	}
	// Rotation: the new key is prepended; the old one still opens.
	rotated := provider.NewConfigs(db, keyring(t, keyB+","+keyA))
	if acc, err := rotated.Account(ctx, a, event.ProviderMeta); err != nil || acc.Meta.AccessToken != "EAAG-access-SECRET" {
		t.Fatalf("old key after rotation: %v", err)
	}
	// A write after the rotation seals with the new key already.
	if err := rotated.Put(ctx, zapiAccount(a, "INSTA")); err != nil {
		t.Fatal(err)
	}
	n, err := rotated.Rekey(ctx)
	if err != nil || n != 2 {
		t.Fatalf("rekey %d %v, want 2", n, err)
	}
	if n, err := rotated.Rekey(ctx); err != nil || n != 0 {
		t.Fatalf("second rekey %d %v", n, err)
	}
	var keys []string
	rows, _ := db.Pool.Query(ctx, `SELECT DISTINCT key_id FROM provider_configs WHERE key_id IS NOT NULL`)
	for rows.Next() {
		var k string
		_ = rows.Scan(&k)
		keys = append(keys, k)
	}
	rows.Close()
	if len(keys) != 1 || keys[0] != "kb" {
		t.Fatalf("key ids after rekey %v", keys)
	}
	// The old key can go.
	dropped := provider.NewConfigs(db, keyring(t, keyB))
	for _, c := range []struct {
		m int64
		p event.Provider
	}{{a, event.ProviderMeta}, {b, event.ProviderZAPI}, {a, event.ProviderZAPI}} {
		if _, err := dropped.Account(ctx, c.m, c.p); err != nil {
			t.Fatalf("%d %s after dropping the old key: %v", c.m, c.p, err)
		}
	}
	// Rekey with a keyring that lacks a row's key says which.
	if err := old.Put(ctx, metaAccount(b, "102")); err != nil {
		t.Fatal(err)
	}
	if _, err := dropped.Rekey(ctx); err == nil || !strings.Contains(err.Error(), `"ka"`) {
		t.Fatalf("rekey without the old key: %v", err)
	}
}
