package bus_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/testenv"
)

func mediaTTL(t *testing.T, b *bus.Bus) time.Duration {
	t.Helper()
	info, err := b.StreamInfo(context.Background(), bus.StreamMedia)
	if err != nil {
		t.Fatal(err)
	}
	return info.Config.MaxAge
}

// TestProvisionMediaBucket: the admin step creates WA_MEDIA (kept forever
// by default), its retention changes only when a process sets it, and the
// services that use it verify it at start.
func TestProvisionMediaBucket(t *testing.T) {
	url := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := bus.Connect(url, "test", testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	// Streams from before media: a connector refuses to start, naming the bucket.
	old, _ := bus.New(nc, bus.Config{})
	for _, sc := range (bus.Config{}).StreamConfigs() {
		if _, err := old.JS.CreateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	for _, kc := range (bus.Config{}).BucketConfigs() {
		if _, err := old.JS.CreateKeyValue(ctx, kc); err != nil {
			t.Fatal(err)
		}
	}
	for _, svc := range []string{"zapbus-connector", "zapbus-notifier"} {
		if _, err := bus.Open(ctx, url, svc, bus.Config{}, testenv.Logger(t)); !errors.Is(err, bus.ErrNotProvisioned) || !strings.Contains(err.Error(), bus.StreamMedia) {
			t.Fatalf("%s without the media bucket: %v, want ErrNotProvisioned naming %s", svc, err, bus.StreamMedia)
		}
	}
	if b, err := bus.Open(ctx, url, "zapbus-persister", bus.Config{}, testenv.Logger(t)); err != nil {
		t.Fatalf("the persister does not use media: %v", err)
	} else {
		b.Close()
	}

	admin, _ := bus.New(nc, bus.Config{Provision: true})
	if err := admin.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mediaTTL(t, admin); got != 0 {
		t.Fatalf("media retention on creation %s, want 0 (forever)", got)
	}
	info, _ := admin.StreamInfo(ctx, bus.StreamMedia)
	if !info.Config.AllowDirect || !info.Config.AllowRollup || info.Config.Storage.String() != "File" {
		t.Fatalf("media stream config %+v", info.Config)
	}
	month, _ := bus.New(nc, bus.Config{MediaMaxAge: 30 * 24 * time.Hour})
	if err := month.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mediaTTL(t, admin); got != 30*24*time.Hour {
		t.Fatalf("retention %s after provisioning 30 days", got)
	}
	if err := admin.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mediaTTL(t, admin); got != 30*24*time.Hour {
		t.Fatalf("a provision that did not choose a retention changed it to %s", got)
	}
	forever, _ := bus.New(nc, bus.Config{MediaMaxAge: bus.MediaForever})
	if err := forever.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mediaTTL(t, admin); got != 0 {
		t.Fatalf("retention %s after provisioning forever", got)
	}
	if err := (bus.Config{MediaMaxAge: time.Minute}).Validate(); err == nil {
		t.Fatal("a one-minute media retention validated")
	}

	// The services start, and the connector stores a file the notifier reads.
	conn, err := bus.Open(ctx, url, "zapbus-connector", bus.Config{}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	notif, err := bus.Open(ctx, url, "zapbus-notifier", bus.Config{}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer notif.Close()
	cs, err := conn.MediaStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	put, created, err := cs.Put(ctx, 9, strings.NewReader("%PDF-1.7 proposal"), "application/pdf", 1024)
	if err != nil || !created {
		t.Fatalf("put: %v %v", created, err)
	}
	ns, err := notif.MediaStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	o, err := ns.Open(ctx, 9, put.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	got, err := io.ReadAll(o)
	if err != nil || !bytes.Equal(got, []byte("%PDF-1.7 proposal")) || o.Info().MIME != "application/pdf" {
		t.Fatalf("read %q %v %+v", got, err, o.Info())
	}
}
