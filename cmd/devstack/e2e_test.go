package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/testenv"
)

// stack is a running dev binary.
type stack struct {
	t       *testing.T
	base    string
	admin   string
	logFile string // JSON log lines, debug level
	dsn     string // its database
	banner  string // what it printed at start
}

// startStack runs the dev binary in-process (sim mode, its own embedded NATS
// and a fresh database) and waits until it is ready.
func startStack(t *testing.T) *stack {
	t.Helper()
	return startStackArgs(t, "-sim")
}

// startStackArgs runs the dev binary with extra arguments.
func startStackArgs(t *testing.T, extra ...string) *stack {
	t.Helper()
	dsn := testenv.Postgres(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	out := &testenv.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"-http-addr", "127.0.0.1:0", "-gateway-addr", "127.0.0.1:0", "-data-dir", dir,
			"-log", filepath.Join(dir, "devstack.log"), "-log-level", "debug"}, extra...),
			func(k string) string {
				if k == "DATABASE_URL" {
					return dsn
				}
				return ""
			}, out)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			// What went wrong inside: the warnings and errors of the log
			// (never debug lines, which may hold phone numbers).
			if b, err := os.ReadFile(filepath.Join(dir, "devstack.log")); err == nil {
				var lines []string
				for _, l := range strings.Split(string(b), "\n") {
					if strings.Contains(l, `"level":"warn"`) || strings.Contains(l, `"level":"error"`) {
						lines = append(lines, l)
					}
				}
				t.Logf("devstack warnings and errors (last 60 of %d):\n%s", len(lines), strings.Join(lines[max(0, len(lines)-60):], "\n"))
			}
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("devstack exited with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("devstack did not stop within 30s; goroutines:\n%s", testenv.Goroutines())
		}
	})
	dash := regexp.MustCompile(`dashboard:\s+(http://\S+)/`)
	tok := regexp.MustCompile(`admin token:\s+(\S+)`)
	testenv.Eventually(t, 60*time.Second, func() bool {
		select {
		case err := <-done:
			t.Fatalf("devstack exited early: %v\n%s", err, out.String())
		default:
		}
		return dash.MatchString(out.String()) && tok.MatchString(out.String())
	}, "devstack never printed its banner:\n%s", out.String())
	s := &stack{t: t, base: dash.FindStringSubmatch(out.String())[1], admin: tok.FindStringSubmatch(out.String())[1],
		logFile: filepath.Join(dir, "devstack.log"), dsn: dsn, banner: out.String()}
	testenv.Eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get(s.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "devstack never became ready")
	return s
}

// do sends a JSON request and decodes the JSON answer into out (when not nil).
func (s *stack) do(method, path, token string, body any, out any) int {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

type sseEvent struct {
	ID    string
	Event string
	Data  string
}

// sse opens GET /v1/events and delivers parsed events on a channel.
func (s *stack) sse(ctx context.Context, token, lastEventID string) <-chan sseEvent {
	s.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("open SSE: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("open SSE: %d", resp.StatusCode)
	}
	return readSSE(resp)
}

// next returns the next event satisfying match, failing after timeout.
func next(t *testing.T, ch <-chan sseEvent, timeout time.Duration, what string, match func(sseEvent) bool) sseEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("SSE closed while waiting for %s", what)
			}
			if match(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no SSE event %s within %s", what, timeout)
		}
	}
}

func dataField(ev sseEvent, field string) string {
	var env struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	_ = json.Unmarshal([]byte(ev.Data), &env)
	if field == "type" {
		return env.Type
	}
	v, _ := env.Data[field].(string)
	return v
}

// TestEndToEnd walks the product path through the dev binary: the real
// whatsmeow client against the fake WhatsApp server, JetStream, the
// persister, Postgres and the notifier's API and SSE.
func TestEndToEnd(t *testing.T) {
	s := startStack(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Create a mentorado.
	var created struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	if code := s.do("POST", "/v1/admin/mentorados", s.admin, map[string]string{"name": "Ana Mentora"}, &created); code != http.StatusCreated || created.Token == "" {
		t.Fatalf("create mentorado: %d %+v", code, created)
	}
	tok := created.Token

	// Live stream first, then connect: the QR arrives over SSE.
	live := s.sse(ctx, tok, "")
	if code := s.do("POST", "/v1/whatsapp/connect", tok, map[string]string{"method": "qr"}, nil); code != http.StatusAccepted {
		t.Fatalf("connect: %d", code)
	}
	qr := next(t, live, 30*time.Second, "qr", func(ev sseEvent) bool { return ev.Event == "qr" })
	if dataField(qr, "code") == "" {
		t.Fatalf("qr event without code: %s", qr.Data)
	}

	// The fake phone scans it: connected.
	var scanned struct {
		Phone string `json:"phone"`
	}
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/scan", created.ID), s.admin, nil, &scanned); code != http.StatusOK {
		t.Fatalf("scan: %d", code)
	}
	next(t, live, 30*time.Second, "connected", func(ev sseEvent) bool {
		return dataField(ev, "type") == "connection" && dataField(ev, "status") == "connected"
	})
	var status struct {
		Status string `json:"status"`
		Phone  string `json:"phone"`
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		s.do("GET", "/v1/whatsapp/status", tok, nil, &status)
		return status.Status == "connected"
	}, "status never became connected: %+v", status)
	if status.Phone != scanned.Phone {
		t.Fatalf("status phone %q, paired %q", status.Phone, scanned.Phone)
	}

	// An inbound message from a new number: appears live and in
	// conversations, with a new lead named after the push name.
	const bia = "5511912345678"
	var in struct {
		ID string `json:"id"`
	}
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/inbound", created.ID), s.admin,
		map[string]string{"phone": bia, "text": "Oi! Quero saber da mentoria.", "push_name": "Bia"}, &in); code != http.StatusAccepted {
		t.Fatalf("inbound: %d", code)
	}
	msgEv := next(t, live, 30*time.Second, "inbound message", func(ev sseEvent) bool {
		return dataField(ev, "type") == "message" && dataField(ev, "wa_id") == in.ID
	})
	if msgEv.ID == "" {
		t.Fatal("stored event without an SSE id")
	}
	type conversation struct {
		Phone  string `json:"phone"`
		Name   string `json:"name"`
		LeadID *int64 `json:"lead_id"`
		Unread int    `json:"unread"`
	}
	var convs struct {
		Conversations []conversation `json:"conversations"`
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		s.do("GET", "/v1/conversations", tok, nil, &convs)
		return len(convs.Conversations) == 1 && convs.Conversations[0].LeadID != nil
	}, "conversation with a lead never appeared: %+v", convs)
	if c := convs.Conversations[0]; c.Phone != bia || c.Name != "Bia" || c.Unread != 1 {
		t.Fatalf("conversation %+v", c)
	}

	// Reply: stored with status sent, then delivered after the contact's receipt.
	var sent struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if code := s.do("POST", "/v1/messages", tok, map[string]string{"phone": "(11) 91234-5678", "text": "Olá Bia, tudo bem?"}, &sent); code != http.StatusCreated || sent.Status != "sent" {
		t.Fatalf("send: %d %+v", code, sent)
	}
	type message struct {
		ID        string `json:"id"`
		Direction string `json:"direction"`
		Status    string `json:"status"`
		Text      string `json:"text"`
	}
	var thread struct {
		Messages []message `json:"messages"`
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		s.do("GET", "/v1/conversations/"+bia+"/messages", tok, nil, &thread)
		return len(thread.Messages) == 2 && thread.Messages[0].ID == sent.ID
	}, "sent message never stored: %+v", thread)
	if m := thread.Messages[0]; m.Status != "sent" || m.Direction != "out" || m.Text != "Olá Bia, tudo bem?" {
		t.Fatalf("stored reply %+v", m)
	}
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/receipt", created.ID), s.admin,
		map[string]string{"phone": bia, "message_id": sent.ID}, nil); code != http.StatusAccepted {
		t.Fatalf("receipt: %d", code)
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		s.do("GET", "/v1/conversations/"+bia+"/messages?limit=1", tok, nil, &thread)
		return len(thread.Messages) == 1 && thread.Messages[0].Status == "delivered"
	}, "reply never became delivered: %+v", thread)

	// Every component's metrics are served, and they saw this traffic.
	for path, want := range map[string]string{
		"/metrics":           "zapbus_",
		"/metrics/connector": "zapbus_connector_",
		"/metrics/persister": `zapbus_persister_events_applied_total{type="message"}`,
	} {
		resp, err := http.Get(s.base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, missing %q", path, resp.StatusCode, want)
		}
	}

	// Collect every stored event the live stream saw after the inbound
	// message, then reconnect with Last-Event-ID = the inbound message's id:
	// exactly those events come back, in order.
	var missed []string
	next(t, live, 30*time.Second, "delivered receipt", func(ev sseEvent) bool {
		if ev.ID != "" {
			missed = append(missed, ev.ID)
		}
		return dataField(ev, "type") == "receipt"
	})
	// Only ids after the inbound message count (ids are stream sequences).
	missed = after(t, missed, msgEv.ID)
	cancel()

	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	resumed := s.sse(ctx2, tok, msgEv.ID)
	var got []string
	for len(got) < len(missed) {
		ev := next(t, resumed, 20*time.Second, "resumed event", func(ev sseEvent) bool { return ev.ID != "" })
		got = append(got, ev.ID)
	}
	if fmt.Sprint(got) != fmt.Sprint(missed) {
		t.Fatalf("resume after %s: got %v, want %v", msgEv.ID, got, missed)
	}
	// Nothing else (no duplicate, no older event) arrives.
	select {
	case ev := <-resumed:
		if ev.ID != "" {
			t.Fatalf("extra event after resume: %+v", ev)
		}
	case <-time.After(500 * time.Millisecond):
	}
}

// after keeps the ids whose stream sequence is greater than from.
func after(t *testing.T, ids []string, from string) []string {
	t.Helper()
	var f int64
	fmt.Sscan(from, &f)
	var out []string
	for _, id := range ids {
		var n int64
		if _, err := fmt.Sscan(id, &n); err != nil {
			t.Fatalf("SSE id %q is not a stream sequence", id)
		}
		if n > f {
			out = append(out, id)
		}
	}
	return out
}

// TestEndToEndPairingCode pairs by phone number: the connect reply carries
// the pairing code, the fake phone of that number types it, and the session
// connects.
func TestEndToEndPairingCode(t *testing.T) {
	s := startStack(t)
	var created struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	if code := s.do("POST", "/v1/admin/mentorados", s.admin, map[string]string{"name": "Caio"}, &created); code != http.StatusCreated {
		t.Fatalf("create mentorado: %d", code)
	}
	const number = "5521987654321"
	var st struct {
		Status      string `json:"status"`
		PairingCode string `json:"pairing_code"`
	}
	if code := s.do("POST", "/v1/whatsapp/connect", created.Token, map[string]string{"method": "phone", "phone": "+55 21 98765-4321"}, &st); code != http.StatusAccepted || len(strings.ReplaceAll(st.PairingCode, "-", "")) != 8 {
		t.Fatalf("connect by phone: %d %+v", code, st)
	}
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/pair-code", created.ID), s.admin, map[string]string{"phone": number}, nil); code != http.StatusOK {
		t.Fatalf("pair-code: %d", code)
	}
	var status struct {
		Status string `json:"status"`
		Phone  string `json:"phone"`
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		s.do("GET", "/v1/whatsapp/status", created.Token, nil, &status)
		return status.Status == "connected"
	}, "never connected: %+v", status)
	if status.Phone != number {
		t.Fatalf("paired phone %q, want %q", status.Phone, number)
	}
	// The sim endpoints are scoped: another mentorado's token cannot drive this one.
	var other struct {
		Token string `json:"token"`
	}
	s.do("POST", "/v1/admin/mentorados", s.admin, map[string]string{"name": "Outro"}, &other)
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/disconnect", created.ID), other.Token, map[string]any{"reason": 401}, nil); code != http.StatusNotFound {
		t.Fatalf("other tenant drove the sim: %d", code)
	}
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/disconnect", created.ID), "wrong-token", map[string]any{"reason": 401}, nil); code != http.StatusUnauthorized {
		t.Fatalf("wrong token drove the sim: %d", code)
	}
}

// TestSimEndpointsOnlyInSimMode: without -sim the dev binary runs the real
// whatsmeow driver and has no /v1/dev routes at all.
func TestSimEndpointsOnlyInSimMode(t *testing.T) {
	s := startStackArgs(t)
	for _, path := range []string{"/v1/dev/sim/1/scan", "/v1/dev/sim/1/inbound", "/v1/dev/sim/1/disconnect",
		"/v1/dev/sim/1/react", "/v1/dev/sim/1/edit", "/v1/dev/sim/1/revoke"} {
		if code := s.do("POST", path, s.admin, map[string]string{}, nil); code != http.StatusNotFound {
			t.Errorf("POST %s without -sim: %d, want 404", path, code)
		}
	}
	if code := s.do("GET", "/v1/dev/sim/1/received?phone=5511912345678", s.admin, nil, nil); code != http.StatusNotFound {
		t.Errorf("GET /v1/dev/sim/1/received without -sim: %d, want 404", code)
	}
}
