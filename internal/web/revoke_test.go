package web

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/zapbus/zapbus/internal/testenv"
)

// dialWS opens /v1/ws on e with a bearer token or a ticket.
func (e *testEnv) dialWS(token, ticket string) *websocket.Conn {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 10*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/v1/ws"
	opts := &websocket.DialOptions{}
	if token != "" {
		opts.HTTPHeader = map[string][]string{"Authorization": {"Bearer " + token}}
	} else {
		u += "?ticket=" + ticket
	}
	c, _, err := websocket.Dial(ctx, u, opts)
	if err != nil {
		e.t.Fatalf("dial ws: %v", err)
	}
	e.t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

// wsEnded reads c in the background; the channel yields the close status
// once the server ends the stream.
func wsEnded(c *websocket.Conn) <-chan websocket.StatusCode {
	ch := make(chan websocket.StatusCode, 1)
	go func() {
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				ch <- websocket.CloseStatus(err)
				return
			}
		}
	}()
	return ch
}

func (e *testEnv) ticket(token string) string {
	e.t.Helper()
	var tr ticketResponse
	e.expect(e.do("POST", "/v1/stream-tickets", token, nil), 201).json(e.t, &tr)
	return tr.Ticket
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestRotationRevokesOpenStreamsOnEveryNotifier: streams opened with the old
// token, by bearer or by ticket, over SSE or websocket, on either of two
// notifiers, end within seconds of a rotation on one of them; the old token
// and tickets minted from it are refused everywhere; the other tenant's
// streams and the new token keep working.
func TestRotationRevokesOpenStreamsOnEveryNotifier(t *testing.T) {
	e1 := newEnv(t)
	e2 := e1.otherNotifier()
	a := e1.createMentorado("Ana")
	b := e1.createMentorado("Bia")

	oldTicket := e2.ticket(a.Token)
	sse1 := e1.openSSE(bearerAuth(a.Token), "")
	sse2 := e2.openSSE(func(r *http.Request) { r.URL.RawQuery = "ticket=" + e2.ticket(a.Token) }, "")
	ws1 := wsEnded(e1.dialWS("", e1.ticket(a.Token)))
	ws2 := wsEnded(e2.dialWS(a.Token, ""))
	other := e2.openSSE(bearerAuth(b.Token), "")

	seq := e1.publishMessage(a.ID, "before", "before rotation")
	testenv.Eventually(t, 5*time.Second, func() bool {
		return len(sse1.Events()) >= 1 && len(sse2.Events()) >= 1
	}, "streams live before the rotation")
	_ = seq

	var tr tokenResponse
	e1.expect(e1.do("POST", "/v1/admin/mentorados/"+itoa(a.ID)+"/tokens", testAdminToken, nil), 201).json(t, &tr)

	testenv.Eventually(t, 10*time.Second, func() bool { return closed(sse1.done) }, "SSE (bearer) on the rotating notifier ended")
	testenv.Eventually(t, 10*time.Second, func() bool { return closed(sse2.done) }, "SSE (ticket) on the other notifier ended")
	for i, ch := range []<-chan websocket.StatusCode{ws1, ws2} {
		select {
		case code := <-ch:
			if code != websocket.StatusPolicyViolation {
				t.Errorf("websocket %d closed with %v, want policy violation", i+1, code)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("websocket %d still open 10 s after the rotation", i+1)
		}
	}
	// Nothing of A after the rotation reached the old streams.
	n1, n2 := len(sse1.Events()), len(sse2.Events())
	e1.publishMessage(a.ID, "after", "after rotation")
	if len(sse1.Events()) != n1 || len(sse2.Events()) != n2 {
		t.Fatal("a revoked stream received an event")
	}

	for _, e := range []*testEnv{e1, e2} {
		if code := e.expect(e.do("GET", "/v1/whatsapp/status", a.Token, nil), 401).errorCode(t); code != codeUnauthorized {
			t.Fatalf("old token: %s", code)
		}
		e.expect(e.getStream("/v1/events?ticket="+oldTicket, ""), 401)
		e.expect(e.getStream("/v1/events", a.Token), 401)
		e.expect(e.do("POST", "/v1/stream-tickets", a.Token, nil), 401)
	}
	// B's stream on the other notifier is untouched; A's new token works.
	if closed(other.done) {
		t.Fatal("another tenant's stream was ended")
	}
	fresh := e2.openSSE(bearerAuth(tr.Token), "")
	e1.publishMessage(a.ID, "new", "with the new token")
	testenv.Eventually(t, 5*time.Second, func() bool { return len(fresh.Events()) >= 1 }, "new token streams")
}

// A stream whose token changed without the revocation reaching its
// notifier (a lost core NATS message) ends at the next recheck.
func TestStreamRecheckEndsStaleStreams(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.StreamAuthRecheck = time.Second })
	a := e.createMentorado("Ana")
	sse := e.openSSE(bearerAuth(a.Token), "")
	// Rotate behind the notifier's back (no revocation published).
	if _, err := e.db.Pool.Exec(t.Context(), `UPDATE mentorados SET token_hash = $2 WHERE id = $1`, a.ID, hashToken("zbt_other")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return closed(sse.done) }, "stale stream ended by the recheck")
	if err := sse.err; err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("reader: %v", err)
	}
}
