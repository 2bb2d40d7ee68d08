package connector

import (
	"bytes"
	"compress/zlib"
	"errors"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"
	wastore "go.mau.fi/whatsmeow/store"

	"github.com/zapbus/zapbus/internal/waconv"
)

func TestHistoryConfig(t *testing.T) {
	c := HistoryConfig{}.WithDefaults()
	if c.MaxAttempts != 8 || c.MaxAge != 72*time.Hour || c.Lease != 10*time.Minute || c.RetryBase != 5*time.Second || c.RetryMax != 10*time.Minute {
		t.Fatalf("defaults %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []HistoryConfig{{MaxAttempts: -1}, {MaxAge: -time.Second}, {Lease: -1}} {
		if bad.Validate() == nil {
			t.Errorf("%+v passed", bad)
		}
	}
	if d := c.retryDelay(20, 0.999); d > c.RetryMax || d < c.RetryMax/2 {
		t.Errorf("capped delay %s", d)
	}
	full := Config{}.WithDefaults(time.Second)
	if full.History.MaxAttempts != 8 {
		t.Errorf("Config.WithDefaults leaves history %+v", full.History)
	}
	full.History.MaxAge = -1
	if full.Validate() == nil {
		t.Error("Config.Validate passed a negative history max age")
	}
}

// The real client's device store is the one a history sync teaches.
func TestHistoryDeviceOfRealClient(t *testing.T) {
	dev := &wastore.Device{}
	if got := historyDevice(whatsmeow.NewClient(dev, nil)); got != dev {
		t.Fatalf("device %p, want %p", got, dev)
	}
	if historyDevice(nil) != nil {
		t.Fatal("a nil client has a device")
	}
}

// A blob whose compressed stream breaks off is corrupt (never retried),
// unlike a download error.
func TestHistoryTruncatedZlibIsCorrupt(t *testing.T) {
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	zw.Write(bytes.Repeat([]byte{0x12, 0x03, 0x0a, 0x01, 'x'}, 10000))
	zw.Close()
	w := &historyWorker{}
	blob := buf.Bytes()
	if _, err := w.scan(blob, waconv.HistoryVisitor{}); err != nil {
		t.Fatalf("whole blob: %v", err)
	}
	for _, cut := range []int{len(blob) / 3, len(blob) - 5} {
		if _, err := w.scan(blob[:cut], waconv.HistoryVisitor{}); !errors.Is(err, waconv.ErrHistoryCorrupt) {
			t.Errorf("cut at %d: %v", cut, err)
		}
	}
	if _, err := w.scan([]byte("plain"), waconv.HistoryVisitor{}); !errors.Is(err, waconv.ErrHistoryCorrupt) {
		t.Errorf("not zlib: %v", err)
	}
}
