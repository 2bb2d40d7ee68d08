package webhook_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
	"github.com/zapbus/zapbus/internal/webhook"
)

func ptr[T any](v T) *T { return &v }

// Every event of the filter is delivered, once per delivery id, in stream
// order; events of other types and other tenants are not; an admin-level
// endpoint gets every tenant's events of its types; each request carries
// the Standard Webhooks headers, and the signature verifies with that
// project's own library.
func TestDeliversTheFilterInOrderSigned(t *testing.T) {
	e := newEnv(t)
	rc1 := newReceiver(t, nil)
	rcAll := newReceiver(t, nil)
	w1 := e.addWebhook(store.Webhook{MentoradoID: ptr(int64(1)), URL: rc1.URL, EventTypes: []string{"message", "receipt"}})
	wAll := e.addWebhook(store.Webhook{URL: rcAll.URL, EventTypes: []string{"message"}})
	e.dispatcher(testConfig(), nil, "d1")

	var want1, wantAll []event.Envelope
	for i := range 30 {
		m := int64(i%3 + 1)
		env, _ := e.publish(m, event.TypeMessage, fmt.Sprintf("M%02d", i))
		wantAll = append(wantAll, env)
		if m == 1 {
			want1 = append(want1, env)
		}
		switch i % 5 {
		case 0:
			env, _ := e.publish(m, event.TypeReceipt, fmt.Sprintf("M%02d", i))
			if m == 1 {
				want1 = append(want1, env)
			}
		case 1:
			e.publish(m, event.TypeContact, fmt.Sprintf("name %d", i)) // not in either filter
		}
	}
	if got := rc1.waitDelivered(t, len(want1)); !slices.Equal(got, ids(want1)) {
		t.Fatalf("mentorado endpoint got\n%v\nwant\n%v", got, ids(want1))
	}
	if got := rcAll.waitDelivered(t, len(wantAll)); !slices.Equal(got, ids(wantAll)) {
		t.Fatalf("admin endpoint got\n%v\nwant\n%v", got, ids(wantAll))
	}
	for _, c := range []struct {
		rc *receiver
		w  store.Webhook
	}{{rc1, w1}, {rcAll, wAll}} {
		verifier, err := standardwebhooks.NewWebhook(c.w.Secret)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range c.rc.all() {
			if err := verifier.Verify(r.body, r.header); err != nil {
				t.Fatalf("signature of %s: %v", r.env.ID, err)
			}
			if got, want := r.header.Get("webhook-id"), webhook.DeliveryID(r.env.ID); got != want {
				t.Fatalf("webhook-id %q, want %q", got, want)
			}
			if r.header.Get("Content-Type") != "application/json" || r.header.Get("User-Agent") != webhook.UserAgent {
				t.Fatalf("headers %v", r.header)
			}
			ts, _ := strconv.ParseInt(r.header.Get("webhook-timestamp"), 10, 64)
			if d := time.Since(time.Unix(ts, 0)); d < -time.Minute || d > time.Minute {
				t.Fatalf("webhook-timestamp %d is not now", ts)
			}
		}
		// Once per delivery id: no retries happened, so no duplicates.
		if n := len(c.rc.all()); n != len(c.rc.delivered()) {
			t.Fatalf("%d requests for %d events", n, len(c.rc.delivered()))
		}
	}
	// The body is the envelope exactly as stored.
	first := rc1.all()[0]
	data, _ := want1[0].Encode()
	if string(first.body) != string(data) {
		t.Fatalf("body\n%s\nwant\n%s", first.body, data)
	}
	// The delivery log has one delivered row per event, with its sequence.
	testenv.Eventually(t, 10*time.Second, func() bool { return len(e.deliveries(w1.ID)) == len(want1) }, "delivery log")
	for i, d := range e.deliveries(w1.ID) {
		if d.Outcome != store.DeliveryDelivered || d.EventID != want1[i].ID || d.Attempt != 1 || d.StatusCode == nil ||
			*d.StatusCode != 200 || d.StreamSeq == 0 || d.MentoradoID != 1 || d.DeliveryID != webhook.DeliveryID(d.EventID) {
			t.Fatalf("log row %d: %+v", i, d)
		}
	}
}

// 500s then 200: the event is retried with growing delays (visible in the
// delivery log), then delivered, and the events behind it follow in order.
// The endpoint's health shows the run of failures, ended by the success.
func TestRetriesWithBackoffThenDelivers(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, func(n int, _ received) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	w := e.addWebhook(store.Webhook{MentoradoID: ptr(int64(1)), URL: rc.URL, EventTypes: []string{"message"}})
	cfg := testConfig()
	cfg.Backoff = []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 900 * time.Millisecond, time.Second}
	e.dispatcher(cfg, nil, "d1")
	var want []event.Envelope
	for i := range 4 {
		env, _ := e.publish(1, event.TypeMessage, fmt.Sprintf("R%d", i))
		want = append(want, env)
	}
	// While failing, the health columns say so.
	testenv.Eventually(t, 10*time.Second, func() bool { return len(rc.all()) >= 2 }, "two attempts")
	testenv.Eventually(t, 10*time.Second, func() bool {
		h := e.webhookRow(w.ID)
		return h.ConsecutiveFailures >= 2 && h.FailingSince != nil && h.LastFailureAt != nil
	}, "health after failures")
	if got := rc.waitDelivered(t, len(want)); !slices.Equal(got, ids(want)) {
		t.Fatalf("got %v, want %v", got, ids(want))
	}
	reqs := rc.all()
	for i := range 4 {
		if reqs[i].env.ID != want[0].ID {
			t.Fatalf("request %d was %s, not the first event's retry", i, reqs[i].env.ID)
		}
		if reqs[i].header.Get("webhook-id") != reqs[0].header.Get("webhook-id") {
			t.Fatal("webhook-id changed between retries")
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return len(e.deliveries(w.ID)) == 7 }, "delivery log rows")
	log := e.deliveries(w.ID)
	for i, d := range log[:4] {
		wantOutcome := store.DeliveryRetry
		if i == 3 {
			wantOutcome = store.DeliveryDelivered
		}
		if d.Attempt != i+1 || d.Outcome != wantOutcome || d.EventID != want[0].ID {
			t.Fatalf("log row %d: %+v", i, d)
		}
		if i < 3 && (d.StatusCode == nil || *d.StatusCode != 500 || !strings.Contains(d.Error, "HTTP 500")) {
			t.Fatalf("log row %d: %+v", i, d)
		}
		if i > 0 {
			gap := d.AttemptedAt.Sub(log[i-1].AttemptedAt)
			min := cfg.Backoff[i-1] * 8 / 10
			t.Logf("attempt %d after %s (backoff %s ±20%%)", d.Attempt, gap.Round(time.Millisecond), cfg.Backoff[i-1])
			if gap < min-10*time.Millisecond {
				t.Fatalf("attempt %d only %s after the previous one; backoff %s", d.Attempt, gap, cfg.Backoff[i-1])
			}
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		h := e.webhookRow(w.ID)
		return h.ConsecutiveFailures == 0 && h.FailingSince == nil && h.LastSuccessAt != nil
	}, "health after the success")
}

// The receiver down for a while (connection refused), then up: everything
// is delivered after, in order.
func TestReceiverDownThenUp(t *testing.T) {
	e := newEnv(t)
	addr := freePort(t)
	rc := &receiver{}
	w := e.addWebhook(store.Webhook{MentoradoID: ptr(int64(2)), URL: "http://" + addr + "/in", EventTypes: []string{"message"}})
	e.dispatcher(testConfig(), nil, "d1")
	var want []event.Envelope
	for i := range 5 {
		env, _ := e.publish(2, event.TypeMessage, fmt.Sprintf("D%d", i))
		want = append(want, env)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		n := 0
		for _, d := range e.deliveries(w.ID) {
			if d.Outcome == store.DeliveryRetry && d.StatusCode == nil && d.Error != "" {
				n++
			}
		}
		return n >= 3
	}, "failed attempts while the receiver is down")
	srv := &http.Server{Handler: http.HandlerFunc(rc.serve)}
	l, err := listenAgain(addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	if got := rc.waitDelivered(t, len(want)); !slices.Equal(got, ids(want)) {
		t.Fatalf("got %v, want %v", got, ids(want))
	}
}

// 410 Gone disables the endpoint with a webhook event; the event is kept
// and delivered when the endpoint is resumed.
func TestGoneDisablesAndResumeDelivers(t *testing.T) {
	e := newEnv(t)
	var gone atomic.Bool
	gone.Store(true)
	rc := newReceiver(t, func(int, received) int {
		if gone.Load() {
			return http.StatusGone
		}
		return http.StatusOK
	})
	w := e.addWebhook(store.Webhook{MentoradoID: ptr(int64(1)), URL: rc.URL, EventTypes: []string{"message"}})
	e.dispatcher(testConfig(), nil, "d1")
	first, _ := e.publish(1, event.TypeMessage, "G1")
	testenv.Eventually(t, 10*time.Second, func() bool { return e.webhookRow(w.ID).State == string(event.WebhookDisabled) }, "disabled")
	row := e.webhookRow(w.ID)
	if !strings.Contains(row.StateReason, "410") {
		t.Fatalf("reason %q", row.StateReason)
	}
	ev := e.webhookEvent(1)
	if ev.WebhookID != w.ID || ev.State != event.WebhookDisabled || ev.Host != "127.0.0.1" || !strings.Contains(ev.Reason, "410") {
		t.Fatalf("webhook event %+v", ev)
	}
	second, _ := e.publish(1, event.TypeMessage, "G2")
	n := len(rc.all())
	gone.Store(false)
	e.exec(`UPDATE webhooks SET state = 'active', state_reason = '', state_at = now() WHERE id = $1`, w.ID)
	if got := rc.waitDelivered(t, 2); !slices.Equal(got, []string{first.ID, second.ID}) {
		t.Fatalf("after resume got %v", got)
	}
	if n != 1 {
		t.Fatalf("%d requests while disabled, want only the one answered 410", n)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		for _, d := range e.deliveries(w.ID) {
			if d.Outcome == store.DeliveryGone && *d.StatusCode == 410 {
				return true
			}
		}
		return false
	}, "gone in the delivery log")
}

// webhookEvent reads the last webhook event of mentorado m from WA_EVENTS.
func (e *env) webhookEvent(m int64) *event.Webhook {
	e.t.Helper()
	var ev *event.Webhook
	testenv.Eventually(e.t, 10*time.Second, func() bool {
		st, err := e.bus.JS.Stream(context.Background(), bus.StreamEvents)
		if err != nil {
			return false
		}
		msg, err := st.GetLastMsgForSubject(context.Background(), event.EventSubject(m, event.TypeWebhook))
		if err != nil {
			return false
		}
		_, p, err := event.Decode(msg.Data)
		if err != nil {
			e.t.Fatal(err)
		}
		ev = p.(*event.Webhook)
		return true
	}, "webhook event of mentorado %d", m)
	return ev
}

// After the last attempt the event is dead-lettered with the reason and
// terminated; the next event is delivered.
func TestLastAttemptDeadLetters(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, func(_ int, r received) int {
		if strings.HasSuffix(r.env.ID, ":P") {
			return http.StatusInternalServerError // this one never makes it
		}
		return http.StatusOK
	})
	w := e.addWebhook(store.Webhook{MentoradoID: ptr(int64(1)), URL: rc.URL, EventTypes: []string{"message"}})
	cfg := testConfig()
	cfg.Backoff = []time.Duration{20 * time.Millisecond, 40 * time.Millisecond}
	e.dispatcher(cfg, nil, "d1")
	poison, seq := e.publish(1, event.TypeMessage, "P")
	next, _ := e.publish(1, event.TypeMessage, "N")
	if got := rc.waitDelivered(t, 1); !slices.Equal(got, []string{next.ID}) {
		t.Fatalf("delivered %v", got)
	}
	if n := len(rc.all()); n != 4 {
		t.Fatalf("%d requests, want 3 attempts then the next event", n)
	}
	st, err := e.bus.JS.Stream(context.Background(), bus.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := st.GetLastMsgForSubject(context.Background(), bus.DLQSubjectWebhooks)
	if err != nil {
		t.Fatal(err)
	}
	reason := dl.Header.Get(bus.HeaderError)
	data, _ := poison.Encode()
	if string(dl.Data) != string(data) || dl.Header.Get(bus.HeaderOriginalSeq) != strconv.FormatUint(seq, 10) ||
		dl.Header.Get(bus.HeaderWebhook) != strconv.FormatInt(w.ID, 10) ||
		!strings.Contains(reason, fmt.Sprintf("webhook %d", w.ID)) || !strings.Contains(reason, "HTTP 500") ||
		!strings.Contains(reason, "attempt 3 of 3") {
		t.Fatalf("dead letter %v %s", dl.Header, dl.Data)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		log := e.deliveries(w.ID)
		return len(log) == 4 && log[2].Outcome == store.DeliveryDead && log[2].Attempt == 3
	}, "dead in the delivery log")
}

// An endpoint failing for AutoPauseAfter is paused with a webhook event;
// the event in flight is kept and delivered after a resume.
func TestAutoPause(t *testing.T) {
	e := newEnv(t)
	var failing atomic.Bool
	failing.Store(true)
	rc := newReceiver(t, func(int, received) int {
		if failing.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	w := e.addWebhook(store.Webhook{MentoradoID: ptr(int64(3)), URL: rc.URL, EventTypes: []string{"message"}})
	cfg := testConfig()
	cfg.AutoPauseAfter = 400 * time.Millisecond
	e.dispatcher(cfg, nil, "d1")
	env, _ := e.publish(3, event.TypeMessage, "A")
	testenv.Eventually(t, 10*time.Second, func() bool { return e.webhookRow(w.ID).State == string(event.WebhookPaused) }, "paused")
	row := e.webhookRow(w.ID)
	if !strings.Contains(row.StateReason, "consecutive failures") || !strings.Contains(row.StateReason, "failing for") {
		t.Fatalf("reason %q", row.StateReason)
	}
	ev := e.webhookEvent(3)
	if ev.State != event.WebhookPaused || ev.Failures < 2 || ev.FailingSince == nil || ev.WebhookID != w.ID {
		t.Fatalf("webhook event %+v", ev)
	}
	failing.Store(false)
	e.exec(`UPDATE webhooks SET state = 'active', state_reason = '', state_at = now() WHERE id = $1`, w.ID)
	if got := rc.waitDelivered(t, 1); got[0] != env.ID {
		t.Fatalf("got %v", got)
	}
}

// A paused endpoint gets nothing; resumed, it gets what arrived meanwhile.
func TestPausedGetsNothingResumedGetsEverything(t *testing.T) {
	e := newEnv(t)
	rcActive := newReceiver(t, nil)
	rcPaused := newReceiver(t, nil)
	e.addWebhook(store.Webhook{MentoradoID: ptr(int64(1)), URL: rcActive.URL, EventTypes: []string{"message"}})
	wp := e.addWebhook(store.Webhook{MentoradoID: ptr(int64(1)), URL: rcPaused.URL, EventTypes: []string{"message"},
		State: string(event.WebhookPaused), StateReason: "by the user"})
	e.dispatcher(testConfig(), nil, "d1")
	var want []event.Envelope
	for i := range 5 {
		env, _ := e.publish(1, event.TypeMessage, fmt.Sprintf("Q%d", i))
		want = append(want, env)
	}
	rcActive.waitDelivered(t, len(want))
	if n := len(rcPaused.all()); n != 0 {
		t.Fatalf("paused endpoint got %d requests", n)
	}
	e.exec(`UPDATE webhooks SET state = 'active', state_at = now() WHERE id = $1`, wp.ID)
	if got := rcPaused.waitDelivered(t, len(want)); !slices.Equal(got, ids(want)) {
		t.Fatalf("resumed endpoint got %v", got)
	}
}

// Redeliver: a new generation from a stream sequence sends again from
// there, with the same delivery ids; the old consumer is deleted.
func TestRedeliverFromSequence(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	w := e.addWebhook(store.Webhook{MentoradoID: ptr(int64(1)), URL: rc.URL, EventTypes: []string{"message"}})
	e.dispatcher(testConfig(), nil, "d1")
	var want []event.Envelope
	var seqs []uint64
	var before3 time.Time
	for i := range 5 {
		if i == 3 {
			before3 = time.Now()
			time.Sleep(5 * time.Millisecond) // stream timestamps after before3
		}
		env, seq := e.publish(1, event.TypeMessage, fmt.Sprintf("X%d", i))
		want, seqs = append(want, env), append(seqs, seq)
	}
	rc.waitDelivered(t, 5)
	firstIDs := map[string]string{}
	for _, r := range rc.all() {
		firstIDs[r.env.ID] = r.header.Get("webhook-id")
	}
	e.exec(`UPDATE webhooks SET generation = generation + 1, start_seq = $2 WHERE id = $1`, w.ID, int64(seqs[2]))
	testenv.Eventually(t, 20*time.Second, func() bool { return len(rc.all()) >= 8 }, "redelivered")
	again := rc.all()[5:]
	for i, r := range again {
		if r.env.ID != want[2+i].ID {
			t.Fatalf("redelivery %d was %s, want %s", i, r.env.ID, want[2+i].ID)
		}
		if r.header.Get("webhook-id") != firstIDs[r.env.ID] {
			t.Fatal("redelivery changed the webhook-id")
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		names, err := e.bus.WebhookConsumerNames(context.Background())
		return err == nil && slices.Equal(names, []string{bus.WebhookConsumerName(w.ID, 2)})
	}, "old generation's consumer deleted")
	// From a time: the events stored since.
	e.exec(`UPDATE webhooks SET generation = 3, start_seq = NULL, start_time = $2 WHERE id = $1`, w.ID, before3)
	testenv.Eventually(t, 20*time.Second, func() bool { return len(rc.all()) >= 10 }, "redelivered from a time")
	for i, r := range rc.all()[8:] {
		if r.env.ID != want[3+i].ID || r.header.Get("webhook-id") != firstIDs[r.env.ID] {
			t.Fatalf("redelivery from a time %d was %s", i, r.env.ID)
		}
	}
	// Deleting the row deletes its consumer.
	e.exec(`DELETE FROM webhooks WHERE id = $1`, w.ID)
	testenv.Eventually(t, 10*time.Second, func() bool {
		names, err := e.bus.WebhookConsumerNames(context.Background())
		return err == nil && len(names) == 0
	}, "deleted webhook's consumer deleted")
}

// During a secret rotation both secrets sign; each verifies on its own
// with the Standard Webhooks library. After previous_secret_until only
// the new one signs.
func TestSignaturesDuringRotation(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	oldSecret, newSecretStr := newSecret(t), newSecret(t)
	w := e.addWebhook(store.Webhook{MentoradoID: ptr(int64(1)), URL: rc.URL, EventTypes: []string{"message"},
		Secret: newSecretStr, PreviousSecret: &oldSecret, PreviousSecretUntil: ptr(time.Now().Add(time.Hour))})
	e.dispatcher(testConfig(), nil, "d1")
	e.publish(1, event.TypeMessage, "S1")
	rc.waitDelivered(t, 1)
	r := rc.all()[0]
	if n := len(strings.Fields(r.header.Get("webhook-signature"))); n != 2 {
		t.Fatalf("%d signatures during the rotation, want 2", n)
	}
	for _, s := range []string{oldSecret, newSecretStr} {
		v, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(r.body, r.header); err != nil {
			t.Fatalf("verify: %v", err)
		}
	}
	// The rotation window ends.
	e.exec(`UPDATE webhooks SET previous_secret_until = now() - interval '1 second' WHERE id = $1`, w.ID)
	// The next reconcile picks it up: deliver until a request shows it.
	for i := 2; ; i++ {
		e.publish(1, event.TypeMessage, fmt.Sprintf("S%d", i))
		all := rc.waitDelivered(t, i)
		if len(strings.Fields(rc.all()[len(all)-1].header.Get("webhook-signature"))) == 1 {
			break
		}
		if i > 200 {
			t.Fatal("still two signatures after the rotation window")
		}
		time.Sleep(20 * time.Millisecond)
	}
	all := rc.all()
	last := all[len(all)-1]
	vOld, _ := standardwebhooks.NewWebhook(oldSecret)
	vNew, _ := standardwebhooks.NewWebhook(newSecretStr)
	if vNew.Verify(last.body, last.header) != nil || vOld.Verify(last.body, last.header) == nil {
		t.Fatal("after the window only the new secret must verify")
	}
}

// A URL whose address the policy refuses is never called: the attempt is
// logged as refused (and retried, so fixing the configuration delivers).
func TestRefusedAtConnectTime(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	w := e.addWebhook(store.Webhook{MentoradoID: ptr(int64(1)), URL: rc.URL, EventTypes: []string{"message"}})
	cfg := testConfig()
	cfg.Policy.AllowNets = nil // 127.0.0.1 is not allowed
	e.dispatcher(cfg, nil, "d1")
	e.publish(1, event.TypeMessage, "F1")
	testenv.Eventually(t, 10*time.Second, func() bool {
		n := 0
		for _, d := range e.deliveries(w.ID) {
			if d.Outcome == store.DeliveryRefused && d.StatusCode == nil && strings.Contains(d.Error, "not allowed") {
				n++
			}
		}
		return n >= 2
	}, "refused attempts in the log")
	if n := len(rc.all()); n != 0 {
		t.Fatalf("receiver got %d requests", n)
	}
	for _, d := range e.deliveries(w.ID) {
		if strings.Contains(d.Error, "s3cr3t") {
			t.Fatalf("the URL's query is in the log: %q", d.Error)
		}
	}
}

// A name that resolves to a refused address (DNS rebinding: it may have
// resolved elsewhere when the URL was saved) is refused when connecting;
// the same name with its network allowed is delivered to.
func TestRefusedAfterResolvingAtConnectTime(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	port := rc.srv.URL[strings.LastIndex(rc.srv.URL, ":"):]
	dns := fakeDNS(t, map[string][]string{"hooks.example.": {"127.0.0.1"}})
	w := e.addWebhook(store.Webhook{MentoradoID: ptr(int64(1)), URL: "http://hooks.example" + port + "/in", EventTypes: []string{"message"}})
	cfg := testConfig()
	cfg.Policy = webhook.Policy{AllowHTTP: true, Resolver: dns}
	stop := e.dispatcher(cfg, nil, "strict")
	env, _ := e.publish(1, event.TypeMessage, "RB")
	testenv.Eventually(t, 10*time.Second, func() bool {
		for _, d := range e.deliveries(w.ID) {
			if d.Outcome == store.DeliveryRefused && strings.Contains(d.Error, "127.0.0.1") {
				return true
			}
		}
		return false
	}, "refused after resolving")
	if n := len(rc.all()); n != 0 {
		t.Fatalf("receiver got %d requests", n)
	}
	stop()
	cfg.Policy.AllowNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	e.dispatcher(cfg, nil, "allowing")
	if got := rc.waitDelivered(t, 1); got[0] != env.ID {
		t.Fatalf("got %v", got)
	}
}

// Two dispatchers on the same endpoints, with failures, one of them
// stopping halfway: no event lost, order kept per endpoint, duplicates
// only from at-least-once.
func TestTwoDispatchersShareTheWork(t *testing.T) {
	e := newEnv(t)
	var n atomic.Int64
	answer := func(int, received) int {
		if n.Add(1)%7 == 0 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}
	var rcs []*receiver
	var hooks []store.Webhook
	for m := int64(1); m <= 3; m++ {
		rc := newReceiver(t, answer)
		rcs = append(rcs, rc)
		hooks = append(hooks, e.addWebhook(store.Webhook{MentoradoID: ptr(m), URL: rc.URL, EventTypes: []string{"message", "receipt"}}))
	}
	rcAll := newReceiver(t, answer)
	rcs = append(rcs, rcAll)
	hooks = append(hooks, e.addWebhook(store.Webhook{URL: rcAll.URL, EventTypes: []string{"message"}}))
	stop1 := e.dispatcher(testConfig(), e.newBus("d1"), "d1")
	e.dispatcher(testConfig(), e.newBus("d2"), "d2")

	want := make([][]string, 4)
	for i := range 120 {
		m := int64(i%3 + 1)
		env, _ := e.publish(m, event.TypeMessage, fmt.Sprintf("T%03d", i))
		want[m-1] = append(want[m-1], env.ID)
		want[3] = append(want[3], env.ID)
		if i%4 == 0 {
			env, _ := e.publish(m, event.TypeReceipt, fmt.Sprintf("T%03d", i))
			want[m-1] = append(want[m-1], env.ID)
		}
		if i == 60 {
			stop1() // d2 carries on alone
		}
	}
	for i, rc := range rcs {
		if got := rc.waitDelivered(t, len(want[i])); !slices.Equal(got, want[i]) {
			t.Fatalf("endpoint %d got\n%v\nwant\n%v", hooks[i].ID, got, want[i])
		}
		// A duplicate can only be the event just delivered (its ack was
		// lost) or one whose attempt failed: never an older one.
		var last string
		seen := map[string]bool{}
		for _, r := range rc.all() {
			if seen[r.env.ID] && r.env.ID != last {
				t.Fatalf("endpoint %d: %s sent again after %s", hooks[i].ID, r.env.ID, last)
			}
			seen[r.env.ID], last = true, r.env.ID
		}
	}
}

// A dispatcher that dies while the receiver holds its request (its NATS
// connection gone, so it cannot hand the event back): the other delivers
// the event after AckWait, then the rest in order.
func TestDispatcherKilledMidDelivery(t *testing.T) {
	e := newEnv(t)
	held := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	rc := newReceiver(t, func(n int, _ received) int {
		if n == 1 {
			once.Do(func() { close(held) })
			<-release
		}
		return http.StatusOK
	})
	t.Cleanup(func() { close(release) })
	w := e.addWebhook(store.Webhook{MentoradoID: ptr(int64(1)), URL: rc.URL, EventTypes: []string{"message"}})
	cfg := testConfig()
	cfg.Timeout = 3 * time.Second // AckWait 4.5 s
	busA := e.newBus("dA")
	stopA := e.dispatcher(cfg, busA, "dA")
	var want []string
	for i := range 3 {
		env, _ := e.publish(1, event.TypeMessage, fmt.Sprintf("K%d", i))
		want = append(want, env.ID)
	}
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("no request reached the receiver")
	}
	e.dispatcher(cfg, e.newBus("dB"), "dB")
	busA.Close() // killed: nothing reaches NATS from it any more
	stopA()
	if got := rc.waitDelivered(t, 3); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if reqs := rc.all(); reqs[0].env.ID != want[0] {
		t.Fatalf("first request after the kill was %s", reqs[0].env.ID)
	}
	_ = w
}

// Event types changed without a new generation: the consumer's filter is
// updated in place and delivery goes on from where it was.
func TestEventTypesChangeInPlace(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	w := e.addWebhook(store.Webhook{MentoradoID: ptr(int64(1)), URL: rc.URL, EventTypes: []string{"message"}})
	e.dispatcher(testConfig(), nil, "d1")
	m1, _ := e.publish(1, event.TypeMessage, "E1")
	rc.waitDelivered(t, 1)
	e.exec(`UPDATE webhooks SET event_types = '{message,receipt}' WHERE id = $1`, w.ID)
	testenv.Eventually(t, 10*time.Second, func() bool {
		info, err := e.bus.JS.Consumer(context.Background(), bus.StreamEvents, bus.WebhookConsumerName(w.ID, 1))
		return err == nil && len(info.CachedInfo().Config.FilterSubjects) == 2
	}, "filter updated")
	r1, _ := e.publish(1, event.TypeReceipt, "E1")
	m2, _ := e.publish(1, event.TypeMessage, "E2")
	if got := rc.waitDelivered(t, 3); !slices.Equal(got, []string{m1.ID, r1.ID, m2.ID}) {
		t.Fatalf("got %v", got)
	}
}

// Ready reports the first reconcile; the registry counts attempts.
func TestReadyAndMetrics(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	e.addWebhook(store.Webhook{MentoradoID: ptr(int64(1)), URL: rc.URL, EventTypes: []string{"message"}})
	d, err := webhook.New(testConfig(), e.db, e.bus, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := d.Ready(ctx); err == nil {
		t.Fatal("ready before running")
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	testenv.Eventually(t, 10*time.Second, func() bool { return d.Ready(ctx) == nil }, "ready")
	e.publish(1, event.TypeMessage, "M")
	rc.waitDelivered(t, 1)
	testenv.Eventually(t, 10*time.Second, func() bool {
		mfs, err := d.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "zapbus_webhook_attempts_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == store.DeliveryDelivered && m.GetCounter().GetValue() == 1 {
					return true
				}
			}
		}
		return false
	}, "delivered counted")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v at the end of its context", err)
	}
	if _, err := webhook.New(webhook.Config{Backoff: []time.Duration{-1}}, e.db, e.bus, testenv.Logger(t)); err == nil {
		t.Fatal("negative backoff accepted")
	}
}

// A receiver slower than Timeout and a redirect (never followed) are
// failures, retried; a huge response body is not read to the end.
func TestTimeoutAndRedirectAreFailures(t *testing.T) {
	e := newEnv(t)
	elsewhere := newReceiver(t, nil)
	rc := &receiver{answer: func(n int, _ received) int {
		switch n {
		case 1:
			time.Sleep(1500 * time.Millisecond) // beyond the 500 ms timeout
			return http.StatusOK
		case 2:
			return http.StatusFound
		}
		return http.StatusOK
	}}
	// The redirect's Location, and a big body on the success.
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.mu.Lock()
		next := rc.arrived + 1
		rc.mu.Unlock()
		switch next {
		case 2:
			w.Header().Set("Location", elsewhere.URL)
		case 3:
			rc.serve(&bigBody{ResponseWriter: w}, r)
			return
		}
		rc.serve(w, r)
	}))
	t.Cleanup(rc.srv.Close)
	rc.URL = rc.srv.URL + "/hook"
	w := e.addWebhook(store.Webhook{MentoradoID: ptr(int64(1)), URL: rc.URL, EventTypes: []string{"message"}})
	cfg := testConfig()
	cfg.Timeout = 500 * time.Millisecond
	e.dispatcher(cfg, nil, "d1")
	env, _ := e.publish(1, event.TypeMessage, "TO")
	testenv.Eventually(t, 20*time.Second, func() bool {
		log := e.deliveries(w.ID)
		return len(log) == 3 && log[2].Outcome == store.DeliveryDelivered
	}, "three attempts logged")
	log := e.deliveries(w.ID)
	if log[0].Outcome != store.DeliveryRetry || log[0].Error != "timeout" || log[0].StatusCode != nil {
		t.Fatalf("timeout attempt %+v", log[0])
	}
	if log[1].Outcome != store.DeliveryRetry || *log[1].StatusCode != 302 || !strings.Contains(log[1].Error, "redirects are not followed") {
		t.Fatalf("redirect attempt %+v", log[1])
	}
	if log[2].EventID != env.ID || log[2].LatencyMS > 5000 {
		t.Fatalf("delivered attempt %+v", log[2])
	}
	if n := len(elsewhere.all()); n != 0 {
		t.Fatalf("the redirect was followed (%d requests)", n)
	}
}

// bigBody writes 8 MiB after the handler's answer.
type bigBody struct{ http.ResponseWriter }

func (b *bigBody) Write(p []byte) (int, error) {
	n, err := b.ResponseWriter.Write(p)
	chunk := make([]byte, 64<<10)
	for range 128 {
		if _, err := b.ResponseWriter.Write(chunk); err != nil {
			break
		}
	}
	return n, err
}

// The LISTEN connection lost: the dispatcher listens again and reconciles
// (changes made meanwhile included) without waiting for its interval.
func TestListenReconnects(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.ReconcileInterval = time.Hour
	rc1 := newReceiver(t, nil)
	e.addWebhook(store.Webhook{MentoradoID: ptr(int64(1)), URL: rc1.URL, EventTypes: []string{"message"}})
	e.dispatcher(cfg, nil, "d1")
	e.publish(1, event.TypeMessage, "L1")
	rc1.waitDelivered(t, 1)
	var killed int
	testenv.Eventually(t, 10*time.Second, func() bool {
		err := e.db.Pool.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE 'LISTEN %'`).Scan(&killed)
		return err == nil && killed == 1
	}, "the listening connection")
	rc2 := newReceiver(t, nil)
	e.addWebhook(store.Webhook{MentoradoID: ptr(int64(2)), URL: rc2.URL, EventTypes: []string{"message"}})
	env, _ := e.publish(2, event.TypeMessage, "L2")
	if got := rc2.waitDelivered(t, 1); got[0] != env.ID {
		t.Fatalf("got %v", got)
	}
}

// A row whose consumer cannot be updated (its start changed without a new
// generation) is logged; its endpoint keeps delivering from its consumer
// as it was, the others are not held up, and the dispatcher stays ready.
func TestOneBadRowHoldsNothingUp(t *testing.T) {
	e := newEnv(t)
	rc1, rc2 := newReceiver(t, nil), newReceiver(t, nil)
	w1 := e.addWebhook(store.Webhook{MentoradoID: ptr(int64(1)), URL: rc1.URL, EventTypes: []string{"message"}})
	e.addWebhook(store.Webhook{MentoradoID: ptr(int64(2)), URL: rc2.URL, EventTypes: []string{"message"}})
	d, err := webhook.New(testConfig(), e.db, e.bus, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = d.Run(ctx) }()
	testenv.Eventually(t, 10*time.Second, func() bool { return d.Ready(ctx) == nil }, "ready")
	e.exec(`UPDATE webhooks SET start_time = start_time - interval '1 hour' WHERE id = $1`, w1.ID)
	testenv.Eventually(t, 10*time.Second, func() bool { return gauge(t, d, "zapbus_webhook_consumer_errors") == 1 }, "the bad row seen")
	a, _ := e.publish(1, event.TypeMessage, "B1")
	b, _ := e.publish(2, event.TypeMessage, "B2")
	if got := rc1.waitDelivered(t, 1); got[0] != a.ID {
		t.Fatalf("endpoint 1 got %v", got)
	}
	if got := rc2.waitDelivered(t, 1); got[0] != b.ID {
		t.Fatalf("endpoint 2 got %v", got)
	}
	if err := d.Ready(ctx); err != nil {
		t.Fatalf("not ready: %v", err)
	}
}

// gauge reads a gauge without labels from the dispatcher's registry.
func gauge(t *testing.T, d *webhook.Dispatcher, name string) float64 {
	t.Helper()
	mfs, err := d.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
