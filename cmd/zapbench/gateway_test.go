package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/provider/meta"
	"github.com/zapbus/zapbus/internal/provider/meta/metafake"
)

// A merged 10-message delivery is what the real Meta driver reads as ten
// messages of one sender and one contact, under the app secret's
// signature; the scenario's counts rest on it.
func TestMetaBatchIsTenMessagesOneContact(t *testing.T) {
	fake := metafake.New(t)
	num := fake.AddAccount(metafake.Account{PhoneNumberID: "106540300000001", DisplayPhone: "15550780001", Token: "tok"})
	body, err := metaBatch(num, "5511900000001", "Cliente 1", 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	acc := provider.Account{Mentorado: 1, Provider: event.ProviderMeta, Meta: &provider.MetaCredentials{
		PhoneNumberID: "106540300000001", DisplayPhone: "15550780001", AccessToken: "tok", AppSecret: "s3cret"}}
	req := httptest.NewRequest(http.MethodPost, "/providers/meta/1/webhook", bytes.NewReader(body))
	req.Header.Set(meta.SignatureHeader, metafake.Sign("s3cret", body))
	in, err := meta.New(meta.Config{BaseURL: fake.URL(), Log: zerolog.Nop()}).Webhook(context.Background(), acc, req, body)
	if err != nil {
		t.Fatal(err)
	}
	types := map[event.Type]int{}
	ids := map[string]bool{}
	for _, e := range in.Events {
		types[e.Type]++
		ids[e.ID] = true
	}
	if types[event.TypeMessage] != 10 || types[event.TypeContact] != 1 || len(in.Events) != 11 || len(ids) != 11 || len(in.Rejected) != 0 {
		t.Fatalf("got %v (%d distinct ids), rejected %v", types, len(ids), in.Rejected)
	}
	req.Header.Set(meta.SignatureHeader, metafake.Sign("another secret", body))
	if _, err := meta.New(meta.Config{BaseURL: fake.URL()}).Webhook(context.Background(), acc, req, body); err == nil {
		t.Fatal("a delivery signed with another secret was taken")
	}
}
