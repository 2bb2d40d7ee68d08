package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/webhook"
)

// BenchmarkDeliveries compares webhook deliveries (from the stream,
// signed, acked, logged) with raw HTTP POSTs of the same bodies to the
// same local receiver, one endpoint at a time (the per-endpoint order
// makes each endpoint serial) and with eight endpoints (eight mentorados)
// in parallel. Reported: deliveries/s.
//
//	go test -run '^$' -bench Deliveries -benchtime 2000x ./internal/webhook/
func BenchmarkDeliveries(b *testing.B) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	body := bytes.Repeat([]byte("x"), 600) // about a message event's size

	b.Run("raw_post", func(b *testing.B) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
		b.ResetTimer()
		for range b.N {
			resp, err := c.Post(srv.URL, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
	})
	b.Run("raw_post_8_parallel", func(b *testing.B) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
		var n atomic.Int64
		b.ResetTimer()
		done := make(chan struct{})
		for range 8 {
			go func() {
				defer func() { done <- struct{}{} }()
				for n.Add(1) <= int64(b.N) {
					resp, err := c.Post(srv.URL, "application/json", bytes.NewReader(body))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
		for range 8 {
			<-done
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
	})
	for _, endpoints := range []int{1, 8} {
		b.Run(fmt.Sprintf("webhook_%d_endpoints", endpoints), func(b *testing.B) {
			e := newEnv(b)
			if _, err := e.db.Pool.Exec(context.Background(), `INSERT INTO mentorados (id, name) OVERRIDING SYSTEM VALUE
				SELECT g, 'mentorado ' || g FROM generate_series(4, 8) g`); err != nil {
				b.Fatal(err)
			}
			// Events first, then the endpoints (from the start of the
			// stream), so the timing covers delivery only.
			publishMany(b, e, b.N, endpoints)
			b.ResetTimer()
			got.Store(0)
			for m := 1; m <= endpoints; m++ {
				e.addWebhook(store.Webhook{MentoradoID: ptr(int64(m)), URL: srv.URL + "/hook", EventTypes: []string{"message"},
					StartTime: time.Now().Add(-time.Hour)})
			}
			cfg := testConfig()
			stop := e.dispatcher(cfg, nil, "bench")
			for got.Load() < int64(b.N) {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
			stop()
		})
	}
}

// publishMany stores n message events spread over mentorados 1..m.
func publishMany(b *testing.B, e *env, n, m int) {
	b.Helper()
	futs := make([]jetstream.PubAckFuture, 0, n)
	now := time.Now()
	for i := range n {
		mentorado := int64(i%m + 1)
		waID := fmt.Sprintf("B%08d", i)
		env, err := event.New(mentorado, event.MessageEventID(mentorado, waID), now, &event.Message{WAID: waID,
			ChatJID: "5511912345678@s.whatsapp.net", SenderJID: "5511912345678@s.whatsapp.net", Direction: event.DirectionIn,
			Kind: event.KindText, Text: "benchmark message", Timestamp: now, Status: event.MessageReceived})
		if err != nil {
			b.Fatal(err)
		}
		data, _ := env.Encode()
		f, err := e.bus.JS.PublishMsgAsync(&nats.Msg{Subject: env.Subject(), Data: data}, jetstream.WithMsgID(env.ID))
		if err != nil {
			b.Fatal(err)
		}
		futs = append(futs, f)
		if i%500 == 499 {
			<-e.bus.JS.PublishAsyncComplete()
		}
	}
	<-e.bus.JS.PublishAsyncComplete()
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
}

var _ = webhook.DeliveryID
