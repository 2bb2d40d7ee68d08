package zapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
)

// TestDocumentedAnswers reads the REST answers of Z-API's docs
// (testdata/rest) as Z-API would serve them.
func TestDocumentedAnswers(t *testing.T) {
	answers := map[string]struct {
		status int
		file   string
	}{}
	mux := http.NewServeMux()
	mux.HandleFunc("/instances/{id}/token/{token}/{endpoint...}", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Client-Token") != docAccount().ZAPI.ClientToken || r.PathValue("token") != docAccount().ZAPI.InstanceToken {
			t.Errorf("credentials not sent")
		}
		a, ok := answers[r.PathValue("endpoint")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_, _ = w.Write(readTestdata(t, "rest/"+a.file))
	})
	d := newDriver(t, newServer(t, mux))
	acc := docAccount()
	ctx := context.Background()
	set := func(endpoint string, status int, file string) {
		answers[endpoint] = struct {
			status int
			file   string
		}{status, file}
	}

	set("status", 200, "status_connected.json")
	set("device", 200, "device.json")
	st, err := d.Status(ctx, acc)
	if err != nil || st.Status != event.StatusConnected || st.Phone != "5511988887777" {
		t.Fatalf("status %+v, %v", st, err)
	}
	set("status", 200, "status_restore.json")
	st, err = d.Status(ctx, acc)
	if err != nil || st.Status != event.StatusDisconnected || !strings.Contains(st.Reason, "restore the session") {
		t.Fatalf("status %+v, %v", st, err)
	}
	set("status", 200, "status_not_connected.json")
	set("qr-code", 200, "qr_code.json")
	code, _, err := d.QR(ctx, acc)
	if err != nil || !strings.HasPrefix(code, "2@Yk3x") {
		t.Fatalf("qr %q, %v", code, err)
	}
	set("phone-code/5511988887777", 200, "phone_code.json")
	if pc, err := d.PairingCode(ctx, acc, "5511988887777"); err != nil || pc != "K7QD9XRM" {
		t.Fatalf("pairing code %q, %v", pc, err)
	}
	set("disconnect", 200, "disconnect.json")
	if st, err := d.Disconnect(ctx, acc); err != nil || st.Status != event.StatusDisconnected {
		t.Fatalf("disconnect %+v, %v", st, err)
	}
	set("status", 200, "status_connected.json")
	set("send-text", 200, "send_response.json")
	req := provider.SendRequest{SendRequest: event.SendRequest{Text: "oi"}, To: "5544999999999"}
	m, err := d.Send(ctx, acc, req)
	if err != nil || m.WAID != "D241XXXX732339502B68" || m.SenderJID != "5511988887777@s.whatsapp.net" {
		t.Fatalf("send %+v, %v", m, err)
	}
	set("send-text", 400, "client_token_missing.json")
	_, err = d.Send(ctx, acc, req)
	wantCode(t, err, event.CodeProviderError)
	set("send-text", 400, "bad_request.json")
	_, err = d.Send(ctx, acc, req)
	if ce := wantCode(t, err, event.CodeBadRequest); !strings.Contains(ce.Message, "Invalid phone") {
		t.Fatalf("message %q", ce.Message)
	}
	// Z-API answering a send with 200 and "You are not connected.".
	set("send-text", 200, "status_not_connected.json")
	_, err = d.Send(ctx, acc, req)
	wantCode(t, err, event.CodeNotConnected)
}
