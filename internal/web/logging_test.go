package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/zapbus/zapbus/internal/testenv"
)

// TestSecretsNeverLogged drives every path that handles a secret (admin
// token, mentorado tokens, stream tickets, QR codes, message text) with the
// logger at debug level, then searches the whole log for them.
func TestSecretsNeverLogged(t *testing.T) {
	e := newEnv(t)
	fc := e.fakeConnector(defaultAnswer)
	_ = fc
	a := e.createMentorado("Ana")
	res := e.expect(e.do("POST", fmt.Sprintf("/v1/admin/mentorados/%d/tokens", a.ID), testAdminToken, nil), 201)
	var rot tokenResponse
	res.json(t, &rot)
	secrets := []string{testAdminToken, a.Token, rot.Token}

	e.do("GET", "/v1/whatsapp/status", a.Token, nil) // old token, refused
	e.do("GET", "/v1/whatsapp/status", rot.Token+"tampered", nil)
	e.do("POST", "/v1/admin/mentorados", rot.Token, `{"name":"x"}`)
	e.expect(e.do("POST", "/v1/messages", rot.Token, map[string]string{"phone": "5511988887777", "text": "very private text"}), 201)
	secrets = append(secrets, "very private text")
	e.expect(e.do("POST", "/v1/whatsapp/connect", rot.Token, map[string]string{"method": "phone", "phone": "5511988887777"}), 202)
	secrets = append(secrets, "ABCD-EFGH") // pairing code from the fake connector
	e.publishQR(a.ID, "2@qr-secret-code", time.Now().Add(time.Minute))
	secrets = append(secrets, "2@qr-secret-code")
	e.expect(e.do("GET", "/v1/whatsapp/qr.png", rot.Token, nil), 200)

	var tr ticketResponse
	e.expect(e.do("POST", "/v1/stream-tickets", rot.Token, nil), 201).json(t, &tr)
	secrets = append(secrets, tr.Ticket)
	sse := e.openSSE(func(r *http.Request) { r.URL.RawQuery = "ticket=" + tr.Ticket }, "")
	testenv.Eventually(t, 5*time.Second, func() bool { return len(sse.Events()) == 1 }, "qr on sse")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/v1/ws?ticket="+tr.Ticket, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ws.Read(ctx); err != nil {
		t.Fatal(err)
	}
	ws.CloseNow()
	// Refused tickets and ?token= attempts.
	for _, q := range []string{"ticket=" + tr.Ticket + "x", "token=" + rot.Token} {
		r, err := e.srv.Client().Get(e.srv.URL + "/v1/events?" + q)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
	}
	sse.res.Body.Close()
	<-sse.done
	testenv.Eventually(t, 5*time.Second, func() bool { return strings.Contains(e.logs.String(), `"route":"GET /v1/ws"`) }, "ws request logged")

	logs := e.logs.String()
	if !strings.Contains(logs, "mentorado created") || !strings.Contains(logs, "GET /v1/events") {
		t.Fatalf("log capture is not working: %q", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("log contains secret %q", s)
		}
	}
	// Not even a prefix long enough to matter.
	for _, s := range []string{a.Token, rot.Token, tr.Ticket} {
		if strings.Contains(logs, s[:12]) {
			t.Errorf("log contains a prefix of %q", s[:12])
		}
	}
}
