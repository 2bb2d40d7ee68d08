package web

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// A consumer's deliver subject is not subject to NATS permissions: any user
// allowed to create consumers (persister replay, notifier resume) could
// push stored events onto wa.<m>.qr, where the notifier listens. Such a
// delivery must never reach a dashboard as a QR
// (docs/decisions/0005-nats-least-privilege.md).
func TestQRDeliveredByAConsumerIsNotServed(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("a")
	e.publishMessage(a.ID, "W1", "segredo")
	sse := e.openSSE(bearerAuth(a.Token), "")
	ctx := context.Background()
	if _, err := e.bus.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{
		Name: "evil", FilterSubject: event.MentoradoEvents(a.ID), DeliverSubject: event.QRSubject(a.ID), AckPolicy: jetstream.AckNonePolicy,
	}); err != nil {
		t.Fatal(err)
	}
	leaked := func() *sseEvent {
		for _, ev := range sse.Events() {
			if strings.Contains(ev.Data, "segredo") {
				return &ev
			}
		}
		return nil
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		return leaked() != nil || strings.Contains(e.logs.String(), "qr delivered by a JetStream consumer ignored")
	}, "the pushed event never reached the feed")
	e.publishQR(a.ID, "real", time.Now().Add(time.Minute))
	testenv.Eventually(t, 10*time.Second, func() bool {
		for _, ev := range sse.Events() {
			if ev.Event == "qr" && strings.Contains(ev.Data, "real") {
				return true
			}
		}
		return false
	}, "the real qr never arrived")
	if ev := leaked(); ev != nil {
		t.Fatalf("an event pushed onto the QR subject reached the dashboard as %q: %s", ev.Event, ev.Data)
	}
}
