package main

import (
	"math"
	"testing"
	"time"
)

func TestCategorize(t *testing.T) {
	cases := []struct {
		stack []string // innermost first
		want  string
	}{
		{[]string{"crypto/aes.encrypt", "go.mau.fi/libsignal/session.(*Cipher).Encrypt", "github.com/zapbus/zapbus/internal/wafake.(*peer).encrypt"}, "wafake"},
		{[]string{"crypto/aes.decrypt", "go.mau.fi/libsignal/session.(*Cipher).Decrypt", "go.mau.fi/whatsmeow.(*Client).decryptDM"}, "whatsmeow"},
		{[]string{"syscall.Write", "github.com/jackc/pgx/v5/pgconn.(*PgConn).Exec", "go.mau.fi/whatsmeow/store/sqlstore.(*SQLStore).PutSession"}, "pgx"},
		{[]string{"syscall.Write", "github.com/nats-io/nats.go.(*Conn).publish", "github.com/zapbus/zapbus/internal/bus.(*Bus).Publish"}, "nats_client"},
		{[]string{"encoding/json.Marshal", "github.com/zapbus/zapbus/internal/waconv.(*Converter).Convert"}, "zapbus"},
		{[]string{"github.com/nats-io/nats-server/v2/server.(*stream).processJetStreamMsg"}, "nats_server"},
		{[]string{"runtime.gcBgMarkWorker"}, "runtime"},
		{[]string{"encoding/json.Unmarshal", "github.com/zapbus/zapbus/cmd/zapbench.(*inboundRig).watch.func2", "github.com/nats-io/nats.go.(*Conn).waitForMsgs"}, "bench"},
	}
	for _, c := range cases {
		if got := categorize(c.stack); got != c.want {
			t.Errorf("%v: %s, want %s", c.stack, got, c.want)
		}
	}
}

// A real CPU profile of this process decodes, and its shares add up.
func TestAttributeRealProfile(t *testing.T) {
	var pb *profileBuffer
	if err := startProfile(&pb); err != nil {
		t.Skipf("CPU profile unavailable: %v", err)
	}
	x := 0.0
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
		for i := range 10000 {
			x += math.Sqrt(float64(i))
		}
	}
	shares := stopProfile(pb, "", "")
	if x == 0 || len(shares) == 0 {
		t.Fatalf("no shares from a 300 ms busy loop: %v", shares)
	}
	sum := 0.0
	for _, v := range shares {
		sum += v
	}
	if math.Abs(sum-100) > 0.01 {
		t.Fatalf("shares add up to %.2f: %v", sum, shares)
	}
	// The busy loop is the harness's own code.
	if shares["bench"] < 50 {
		t.Fatalf("busy loop attributed elsewhere: %v", shares)
	}
}
