package webhook_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/zapbus/zapbus/internal/webhook"
)

// Sign's output verifies with the Standard Webhooks library (the test
// vector of its README: secret, id, timestamp and body).
func TestSignVerifiesWithTheLibrary(t *testing.T) {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	id := "msg_p5jXN8AQM9LWM0D4loKWxJek"
	ts := time.Unix(1614265330, 0)
	body := []byte(`{"test": 2432232314}`)
	sig, err := webhook.Sign(secret, id, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	if sig != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" {
		t.Fatalf("signature %s differs from the specification's example", sig)
	}
	v, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("webhook-signature", sig)
	if err := v.VerifyIgnoringTimestamp(body, h); err != nil {
		t.Fatal(err)
	}
	h.Set("webhook-signature", strings.Replace(sig, "g0h", "g1h", 1))
	if err := v.VerifyIgnoringTimestamp(body, h); err == nil {
		t.Fatal("a wrong signature verified")
	}
	if _, err := webhook.Sign("whsec_!!!", id, ts, body); !errors.Is(err, webhook.ErrBadSecret) {
		t.Fatalf("bad secret: %v", err)
	}
}

func TestDeliveryID(t *testing.T) {
	a, b := webhook.DeliveryID("1:msg:ABC"), webhook.DeliveryID("1:msg:ABC")
	if a != b || !strings.HasPrefix(a, "msg_") || len(a) != 4+32 {
		t.Fatalf("delivery id %q %q", a, b)
	}
	if webhook.DeliveryID("1:msg:ABD") == a {
		t.Fatal("different events, same delivery id")
	}
}
