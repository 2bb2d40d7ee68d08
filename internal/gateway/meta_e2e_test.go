package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/provider/meta"
	"github.com/zapbus/zapbus/internal/provider/meta/metafake"
)

// TestMetaEndToEnd runs the real Meta driver against metafake through the
// gateway: a signed delivery with an image is stored (file in the media
// store, message and media events) before the 200; a replay is stored
// once; a bad signature is 401; a send inside the window reaches the
// Graph API and is stored before the reply; an outage becomes a backoff
// status and the next success connected.
func TestMetaEndToEnd(t *testing.T) {
	fake := metafake.New(t)
	num := fake.AddAccount(metafake.Account{PhoneNumberID: "106540352242922", DisplayPhone: "15550783881", Token: "EAAG-test"})
	drv := meta.New(meta.Config{BaseURL: fake.URL(), Backoff: func(int) time.Duration { return time.Millisecond }})
	e := newEnv(t, drv, Config{})
	e.configure(1, provider.Account{Provider: event.ProviderMeta, Meta: &provider.MetaCredentials{
		PhoneNumberID: "106540352242922", WABAID: "102290129340398", DisplayPhone: "15550783881",
		AccessToken: "EAAG-test", AppSecret: "app-secret-1", VerifyToken: "verify-1",
	}})
	ctx := context.Background()
	url := e.srv.URL + "/providers/meta/1/webhook"

	wamid, body := num.InboundImage("5511988887777", "olha")
	if code, err := fake.Deliver(ctx, url, "app-secret-1", body); err != nil || code != http.StatusOK {
		t.Fatalf("delivery: %d %v", code, err)
	}
	if code, err := fake.Deliver(ctx, url, "app-secret-1", body); err != nil || code != http.StatusOK {
		t.Fatalf("replay: %d %v", code, err)
	}
	if code, _ := fake.DeliverBadSignature(ctx, url, body); code != http.StatusUnauthorized {
		t.Fatalf("bad signature: %d, want 401", code)
	}
	evs := e.events()
	var msg event.Message
	var done event.MediaDone
	types := map[event.Type]int{}
	for _, ev := range evs {
		types[ev.Type]++
		if ev.Provider != event.ProviderMeta {
			t.Fatalf("event without provider: %+v", ev)
		}
		switch ev.Type {
		case event.TypeMessage:
			_ = json.Unmarshal(ev.Data, &msg)
		case event.TypeMedia:
			_ = json.Unmarshal(ev.Data, &done)
		}
	}
	if types[event.TypeMessage] != 1 || types[event.TypeMedia] != 1 || msg.WAID != wamid || msg.Media == nil || done.State != event.MediaStored || done.MediaID != msg.Media.ID {
		t.Fatalf("stored %v: message %+v media %+v", types, msg, done)
	}
	obj, err := e.gw.media.Open(ctx, 1, msg.Media.ID)
	if err != nil {
		t.Fatalf("file not stored: %v", err)
	}
	obj.Close()

	// Inside the window (the persister would have stored the inbound
	// message): a text goes out through the Graph API.
	if _, err := e.db.Pool.Exec(ctx, `INSERT INTO whatsapp_messages (mentorado_id, wa_message_id, chat_jid, sender_jid, direction, kind, status, status_rank, sent_at)
		VALUES (1, $1, '5511988887777@s.whatsapp.net', '5511988887777@s.whatsapp.net', 'in', 'image', 'received', 1, now())`, wamid); err != nil {
		t.Fatal(err)
	}
	r := e.command(1, event.VerbSend, event.SendRequest{Phone: "5511988887777", Text: "oi!"})
	if r.Error != nil || r.Message == nil || r.Message.WAID == "" {
		t.Fatalf("send: %+v", r)
	}
	if n := len(fake.Sent()); n != 1 {
		t.Fatalf("Graph API got %d messages", n)
	}
	if evs := e.events(); evs[len(evs)-1].ID != event.MessageEventID(1, r.Message.WAID) {
		t.Fatalf("sent message not stored before the reply: %v", evs[len(evs)-1].ID)
	}
	// Outside the window for another chat: refused up front.
	if r := e.command(1, event.VerbSend, event.SendRequest{Phone: "5511977776666", Text: "oi"}); r.Error == nil || r.Error.Code != event.CodeOutsideWindow {
		t.Fatalf("outside the window: %+v", r)
	}

	fake.Outage(true)
	r = e.command(1, event.VerbSend, event.SendRequest{Phone: "5511988887777", Text: "still there?"})
	if r.Error == nil || r.Error.Code != event.CodeUnavailable {
		t.Fatalf("send during the outage: %+v", r)
	}
	fake.Outage(false)
	if r := e.command(1, event.VerbSend, event.SendRequest{Phone: "5511988887777", Text: "back"}); r.Error != nil {
		t.Fatalf("send after the outage: %+v", r.Error)
	}
	conns := connections(t, e.events())
	if len(conns) != 2 || conns[0].Status != event.StatusBackoff || conns[1].Status != event.StatusConnected {
		t.Fatalf("connection events %+v", conns)
	}
}
