package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/provider/zapi"
	"github.com/zapbus/zapbus/internal/provider/zapi/zapifake"
	"github.com/zapbus/zapbus/internal/testenv"
)

// TestZAPIEndToEnd runs the real Z-API driver against zapifake through
// the gateway: connect publishes the instance's QR on wa.<m>.qr, the
// phone scanning it ends in a connected status; a received image is
// stored with its file before the 200 (secret in the path), a wrong
// secret is 401; a send goes out and is stored before the reply.
func TestZAPIEndToEnd(t *testing.T) {
	fake := zapifake.New(t)
	inst := fake.AddInstance(zapifake.InstanceConfig{})
	drv := zapi.New(zapi.Config{BaseURL: fake.URL(), MediaHTTP: http.DefaultClient, Backoff: time.Millisecond})
	e := newEnv(t, drv, Config{})
	e.configure(1, provider.Account{Provider: event.ProviderZAPI, ZAPI: inst.Credentials("s3cret-hook")})
	ctx := context.Background()

	r := e.command(1, event.VerbConnect, event.ConnectRequest{Method: event.ConnectQR})
	if r.Error != nil || r.Status.Status != event.StatusQR {
		t.Fatalf("connect: %+v %+v", r.Error, r.Status)
	}
	live, err := e.bus.LiveQR(ctx, 1)
	if err != nil || live.QR.Code != inst.QR() {
		t.Fatalf("live QR %+v (%v), want the instance's", live.QR, err)
	}
	inst.Scan()
	testenv.Eventually(t, 10*time.Second, func() bool {
		c := connections(t, e.events())
		return len(c) > 0 && c[len(c)-1].Status == event.StatusConnected
	}, "connected not published after the scan")

	// Z-API says the phone went away (a webhook); the next status the
	// instance reports (connected again) is a change to publish.
	if code, err := fake.Deliver(ctx, e.srv.URL+"/providers/zapi/1/webhook/s3cret-hook", inst.Disconnected()); err != nil || code != http.StatusOK {
		t.Fatalf("disconnected webhook: %d %v", code, err)
	}
	if c := connections(t, e.events()); c[len(c)-1].Status != event.StatusDisconnected {
		t.Fatalf("after the disconnected webhook: %+v", c[len(c)-1])
	}
	if r := e.command(1, event.VerbStatus, nil); r.Error != nil || r.Status.Status != event.StatusConnected {
		t.Fatalf("status: %+v", r)
	}
	if c := connections(t, e.events()); c[len(c)-1].Status != event.StatusConnected {
		t.Fatalf("status after the webhook not published: %+v", c[len(c)-1])
	}

	id, body := inst.ReceivedImage("5544999999999", "foto")
	if code, err := fake.Deliver(ctx, e.srv.URL+"/providers/zapi/1/webhook/s3cret-hook", body); err != nil || code != http.StatusOK {
		t.Fatalf("delivery: %d %v", code, err)
	}
	if code, _ := fake.Deliver(ctx, e.srv.URL+"/providers/zapi/1/webhook/wrong", body); code != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d, want 401", code)
	}
	var msg event.Message
	var media int
	for _, ev := range e.events() {
		if ev.Provider != event.ProviderZAPI {
			t.Fatalf("event without provider: %+v", ev)
		}
		switch ev.Type {
		case event.TypeMessage:
			_ = json.Unmarshal(ev.Data, &msg)
		case event.TypeMedia:
			media++
		}
	}
	if msg.WAID != id || msg.Media == nil || media != 1 {
		t.Fatalf("message %+v, %d media events", msg, media)
	}

	r = e.command(1, event.VerbSend, event.SendRequest{Phone: "5544999999999", Text: "recebido"})
	if r.Error != nil || r.Message == nil {
		t.Fatalf("send: %+v", r)
	}
	if n := len(fake.Sent()); n != 1 {
		t.Fatalf("Z-API got %d sends", n)
	}
	evs := e.events()
	if evs[len(evs)-1].ID != event.MessageEventID(1, r.Message.WAID) {
		t.Fatalf("sent message not stored before the reply")
	}
}
