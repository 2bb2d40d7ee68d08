package connector_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/wafake"
)

// BenchmarkInboundImage measures what a received image costs end to end:
// the fake phone encrypts and uploads it to the fake CDN and sends the
// message; the real whatsmeow client decrypts it; the connector publishes
// the message event, queues the download in Postgres, downloads and
// verifies the file, stores it in the WA_MEDIA object store, records it in
// the ledger and publishes the media event. The baseline, in the same run,
// is raw JetStream object-store puts of the same bytes (nats.go's
// ObjectStore.PutBytes into a bucket of the same server), and text messages
// through the same session (the inbound path without a file). Both sides run on
// this machine's cores, the fake phone included, so the ratio is what to
// compare across runs.
//
//	go test -run '^$' -bench InboundImage -benchtime 200x ./internal/connector/
func BenchmarkInboundImage(b *testing.B) {
	for _, size := range []int{100 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) { benchInboundImage(b, size) })
	}
}

func benchInboundImage(b *testing.B, size int) {
	re := newRealEnv(b, newEnv(b, 2*time.Second))
	re.log = re.log.Level(zerolog.WarnLevel) // the benchmark's output is its numbers
	m := re.mentorados(1)[0]
	files := re.mediaStore(b)
	a := re.start("a", re.factory(b), []connector.Option{connector.WithMedia(files)})
	const me, them = "5511955550199", "5511966660199"
	re.pair(b, m, me)
	contact := re.srv.Contact(them)
	ctx := context.Background()

	// Distinct files (content addressing would store one copy otherwise).
	data := make([][]byte, b.N)
	for i := range data {
		data[i] = randomBytes(b, size)
	}

	// Baseline: raw object-store puts of the same bytes.
	raw, err := re.observer.JS.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "BENCH_RAW"})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for i, d := range data {
		if _, err := raw.PutBytes(ctx, fmt.Sprintf("raw/%d", i), d); err != nil {
			b.Fatal(err)
		}
	}
	rawRate := float64(b.N) / time.Since(start).Seconds()

	// Second baseline: text messages through the same session (the
	// inbound path without a file: decrypt, publish, ack).
	waitFor := func(name, label string, n int) {
		deadline := time.Now().Add(time.Duration(n)*time.Second + time.Minute)
		for counterSum(b, a.c, name, label) < float64(n) {
			if time.Now().After(deadline) {
				b.Fatalf("%s{%s}: %v of %d", name, label, counterSum(b, a.c, name, label), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	start = time.Now()
	for i := range b.N {
		if _, err := contact.SendText(ctx, me, fmt.Sprintf("texto %d", i)); err != nil {
			b.Fatal(err)
		}
	}
	waitFor("zapbus_connector_events_published_total", "message", b.N)
	textRate := float64(b.N) / time.Since(start).Seconds()

	b.ResetTimer()
	start = time.Now()
	for _, d := range data {
		if _, err := contact.SendMedia(ctx, me, wafake.MediaKindImage, d, wafake.MediaOptions{Caption: "recibo", Width: 800, Height: 600}); err != nil {
			b.Fatal(err)
		}
	}
	sent := time.Since(start)
	waitFor("zapbus_connector_events_published_total", "message", 2*b.N)
	published := time.Since(start)
	waitFor("zapbus_connector_media_downloads_total", "stored", b.N)
	elapsed := time.Since(start)
	b.StopTimer()

	// Spot-check the last file: stored byte for byte.
	last := data[len(data)-1]
	if got := readStored(b, files, m, sum(last)); !bytes.Equal(got, last) {
		b.Fatal("stored file differs")
	}
	rate := float64(b.N) / elapsed.Seconds()
	b.ReportMetric(rate, "images/s")
	b.ReportMetric(rawRate, "raw_puts/s")
	b.ReportMetric(rate/rawRate, "ratio")
	b.ReportMetric(textRate, "texts/s")
	// The image messages' events alone (decrypt, publish, queue the
	// download, ack): when images/s follows it, downloads keep up.
	b.ReportMetric(float64(b.N)/published.Seconds(), "image_events/s")
	b.ReportMetric(rate/textRate, "vs_text")
	b.ReportMetric(rate*float64(size)/(1<<20), "MiB/s")
	// How fast the fake phone alone put the images on the wire: when this
	// is close to images/s, the phone is the bottleneck, not zapbus.
	b.ReportMetric(float64(b.N)/sent.Seconds(), "phone_sends/s")
}
