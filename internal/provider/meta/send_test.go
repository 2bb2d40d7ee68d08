package meta_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/provider/meta/metafake"
)

func sendReq(r event.SendRequest) provider.SendRequest {
	return provider.SendRequest{SendRequest: r, To: customer, ChatJID: customerJID}
}

// lastSentBody is the JSON of the last message the fake accepted.
func lastSentBody(t *testing.T, srv *metafake.Server) (metafake.SentMessage, []byte) {
	t.Helper()
	sent := srv.Sent()
	if len(sent) == 0 {
		t.Fatal("the fake accepted no message")
	}
	last := sent[len(sent)-1]
	b, _ := json.Marshal(last.Body)
	return last, b
}

func TestSendText(t *testing.T) {
	f := setup(t, 0)
	msg, err := f.d.Send(context.Background(), f.acc, sendReq(event.SendRequest{Phone: customer, Text: "Temos sim! Às 15h serve?", ClientID: "c-1"}))
	if err != nil {
		t.Fatal(err)
	}
	sent, body := lastSentBody(t, f.srv)
	jsonEqual(t, "request", body, testdata(t, "send_text_request.json"))
	want := &event.Message{WAID: sent.WAID, ChatJID: customerJID, SenderJID: display + "@s.whatsapp.net", Phone: customer,
		Direction: event.DirectionOut, Kind: event.KindText, Text: "Temos sim! Às 15h serve?", Timestamp: fixedNow,
		Status: event.MessageSent, ClientID: "c-1"}
	if !reflect.DeepEqual(msg, want) {
		t.Errorf("message\n got %+v\nwant %+v", msg, want)
	}
	if err := msg.Validate(); err != nil {
		t.Errorf("sent message is not a valid event: %v", err)
	}
	for _, r := range f.srv.Requests() {
		if !r.Authorized || r.Path != "/v21.0/"+pnid+"/messages" {
			t.Errorf("request %s %s authorized=%v", r.Method, r.Path, r.Authorized)
		}
	}
}

func TestSendReply(t *testing.T) {
	f := setup(t, 0)
	reply := "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBMDFBQkMxMjM0NTY3ODkwAA=="
	req := sendReq(event.SendRequest{Phone: customer, Text: "Confirmado!", ReplyTo: reply})
	req.ReplyToID = reply
	msg, err := f.d.Send(context.Background(), f.acc, req)
	if err != nil {
		t.Fatal(err)
	}
	_, body := lastSentBody(t, f.srv)
	jsonEqual(t, "request", body, testdata(t, "send_reply_request.json"))
	if msg.ReplyToID != reply {
		t.Errorf("reply_to_id %q", msg.ReplyToID)
	}
}

func TestSendTemplate(t *testing.T) {
	f := setup(t, 0)
	tpl := &event.Template{Name: "lembrete_consulta", Language: "pt_BR", Params: []string{"Maria", "amanhã às 15h"}}
	msg, err := f.d.Send(context.Background(), f.acc, sendReq(event.SendRequest{Phone: customer, Kind: event.KindTemplate, Template: tpl}))
	if err != nil {
		t.Fatal(err)
	}
	_, body := lastSentBody(t, f.srv)
	jsonEqual(t, "request", body, testdata(t, "send_template_request.json"))
	if msg.Kind != event.KindTemplate || msg.Text != tpl.Text() || msg.Text != "[lembrete_consulta (pt_BR)] Maria · amanhã às 15h" {
		t.Errorf("template message kind %s text %q", msg.Kind, msg.Text)
	}
}

func TestSendImageUploadsFirst(t *testing.T) {
	f := setup(t, 0)
	data := []byte("\xff\xd8\xff\xe0 a cardápio photo \xff\xd9")
	sum := sha256.Sum256(data)
	file := &provider.MediaFile{ID: hex.EncodeToString(sum[:]), MIME: "image/jpeg", Size: int64(len(data)), Data: data}
	req := sendReq(event.SendRequest{Phone: customer, Kind: event.KindImage, MediaID: file.ID, Caption: "Nosso cardápio"})
	req.Media = file
	msg, err := f.d.Send(context.Background(), f.acc, req)
	if err != nil {
		t.Fatal(err)
	}
	reqs := f.srv.Requests()
	if len(reqs) != 2 || reqs[0].Path != "/v21.0/"+pnid+"/media" || !strings.HasPrefix(reqs[0].ContentType, "multipart/form-data") {
		t.Fatalf("requests %+v, want the upload then the message", reqs)
	}
	sent, _ := lastSentBody(t, f.srv)
	image, _ := sent.Body["image"].(map[string]any)
	id, _ := image["id"].(string)
	up, ok := f.srv.Uploaded(id)
	if !ok || string(up.Data) != string(data) || up.MIME != "image/jpeg" {
		t.Fatalf("uploaded %q (%v): %+v", id, ok, up)
	}
	if image["caption"] != "Nosso cardápio" || sent.Type != "image" {
		t.Errorf("image message %+v", sent.Body)
	}
	want := &event.Media{ID: file.ID, MIME: "image/jpeg", Size: int64(len(data))}
	if msg.Kind != event.KindImage || msg.Caption != "Nosso cardápio" || !reflect.DeepEqual(msg.Media, want) {
		t.Errorf("message %+v media %+v", msg, msg.Media)
	}
	if err := msg.Validate(); err != nil {
		t.Errorf("sent image is not a valid event: %v", err)
	}
}

func TestReactAndMarkRead(t *testing.T) {
	f := setup(t, 0)
	target := "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBMDFBQkMxMjM0NTY3ODkwAA=="
	msg, err := f.d.React(context.Background(), f.acc, event.ActionRequest{MessageID: target, ChatJID: customerJID, Emoji: "😀"})
	if err != nil {
		t.Fatal(err)
	}
	sent, body := lastSentBody(t, f.srv)
	jsonEqual(t, "reaction", body, testdata(t, "send_reaction_request.json"))
	if msg.WAID != sent.WAID || msg.Kind != event.KindReaction || msg.TargetID != target || msg.Text != "😀" || msg.Direction != event.DirectionOut {
		t.Errorf("reaction message %+v", msg)
	}
	if err := msg.Validate(); err != nil {
		t.Errorf("reaction is not a valid event: %v", err)
	}
	if _, err := f.d.React(context.Background(), f.acc, event.ActionRequest{MessageID: target, ChatJID: "120363@g.us", Emoji: "😀"}); commandCode(err) != event.CodeNotSupported {
		t.Errorf("group reaction: %v, want not_supported", err)
	}

	older := time.Date(2025, 11, 30, 10, 0, 0, 0, time.UTC)
	err = f.d.MarkRead(context.Background(), f.acc, event.ReadRequest{ChatJID: customerJID, Messages: []event.ReadRef{
		{ID: "wamid.older", SenderJID: customerJID, SentAt: older},
		{ID: target, SenderJID: customerJID, SentAt: older.Add(time.Minute)},
		{ID: "wamid.older2", SenderJID: customerJID, SentAt: older.Add(-time.Minute)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	_, body = lastSentBody(t, f.srv)
	jsonEqual(t, "read", body, testdata(t, "mark_read_request.json"))
	if n := len(f.srv.Sent()); n != 2 {
		t.Errorf("%d accepted requests, want the reaction and one read mark (Meta marks the earlier ones with it)", n)
	}
}

func TestStatusAndConnect(t *testing.T) {
	f := setup(t, 0)
	st, err := f.d.Connect(context.Background(), f.acc, event.ConnectRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != event.StatusConnected || st.Phone != display || st.JID != display+"@s.whatsapp.net" {
		t.Errorf("status %+v", st)
	}
	r := f.srv.Requests()[0]
	if r.Method != http.MethodGet || r.Path != "/v21.0/"+pnid || !strings.Contains(r.Query, "fields=display_phone_number,verified_name,quality_rating") {
		t.Errorf("status request %+v", r)
	}
	bad := account(mentorado)
	bad.Meta.AccessToken = "EAAG-revoked-token-0000"
	if _, err := f.d.Status(context.Background(), bad); commandCode(err) != event.CodeProviderError || !strings.Contains(err.Error(), "access token rejected") {
		t.Errorf("revoked token: %v", err)
	}
	for _, call := range []func() (event.StatusReply, error){
		func() (event.StatusReply, error) { return f.d.Disconnect(context.Background(), f.acc) },
		func() (event.StatusReply, error) { return f.d.Logout(context.Background(), f.acc) },
	} {
		before := f.srv.Attempts()
		st, err := call()
		if err != nil || st.Status != event.StatusDisconnected || f.srv.Attempts() != before {
			t.Errorf("disconnect/logout: %+v %v (made a provider call: %v)", st, err, f.srv.Attempts() != before)
		}
	}
}

func TestFetchMedia(t *testing.T) {
	f := setup(t, 0)
	wamid, body := f.num.InboundImage(customer, "recibo")
	in := webhook(t, f.d, f.acc, body)
	if len(in.Media) != 1 || in.Media[0].WAID != wamid {
		t.Fatalf("media refs %+v", in.Media)
	}
	ref := in.Media[0]
	served, ok := f.srv.Uploaded(ref.ProviderID)
	if !ok {
		t.Fatal("the fake serves no such media")
	}
	data, mimeType, err := f.d.FetchMedia(context.Background(), f.acc, ref, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != string(served.Data) || mimeType != "image/jpeg" {
		t.Errorf("fetched %d bytes %s, want %d bytes image/jpeg", len(data), mimeType, len(served.Data))
	}
	if _, _, err := f.d.FetchMedia(context.Background(), f.acc, ref, 8); commandCode(err) != event.CodeMediaTooLarge {
		t.Errorf("over max: %v, want media_too_large", err)
	}
	for _, r := range f.srv.Requests() {
		if !r.Authorized {
			t.Errorf("%s %s without the bearer", r.Method, r.Path)
		}
	}
}

func TestRetryServerErrorThenSuccess(t *testing.T) {
	f := setup(t, 0)
	f.srv.FailNext(1, http.StatusInternalServerError, metafake.ErrorBody(131000, "(#131000) Something went wrong", "Something went wrong."))
	if _, err := f.d.Send(context.Background(), f.acc, sendReq(event.SendRequest{Phone: customer, Text: "oi"})); err != nil {
		t.Fatal(err)
	}
	if n := f.srv.Attempts(); n != 2 {
		t.Errorf("%d attempts, want 2", n)
	}
	if w := f.waits(); len(w) != 1 || w[0] <= 0 {
		t.Errorf("waits %v, want one backoff", w)
	}
	if n := len(f.srv.Sent()); n != 1 {
		t.Errorf("%d messages sent, want 1", n)
	}
}

func TestRateLimitHonoursRetryAfter(t *testing.T) {
	f := setup(t, 0)
	f.srv.RateLimit(1)
	if _, err := f.d.Send(context.Background(), f.acc, sendReq(event.SendRequest{Phone: customer, Text: "oi"})); err != nil {
		t.Fatal(err)
	}
	if w := f.waits(); len(w) != 1 || w[0] != time.Second {
		t.Errorf("waits %v, want [1s] (Retry-After)", w)
	}
	if n := f.srv.Attempts(); n != 2 {
		t.Errorf("%d attempts, want 2", n)
	}

	// Rate limited on every attempt: rate_limited after them all.
	f.srv.RateLimit(3)
	_, err := f.d.Send(context.Background(), f.acc, sendReq(event.SendRequest{Phone: customer, Text: "oi"}))
	if commandCode(err) != event.CodeRateLimited {
		t.Errorf("persistent rate limit: %v, want rate_limited", err)
	}
	if n := f.srv.Attempts(); n != 5 {
		t.Errorf("%d attempts in all, want 2+3", n)
	}
}

func TestOutageGivesUnavailableAfterRetries(t *testing.T) {
	for _, retries := range []int{0, 1, 5} {
		f := setup(t, retries)
		f.srv.Outage(true)
		_, err := f.d.Send(context.Background(), f.acc, sendReq(event.SendRequest{Phone: customer, Text: "oi"}))
		if commandCode(err) != event.CodeUnavailable || !strings.Contains(err.Error(), "meta unreachable") {
			t.Errorf("retries %d: %v, want unavailable (meta unreachable)", retries, err)
		}
		want := retries
		if want == 0 {
			want = 3
		}
		if n := f.srv.Attempts(); n != want {
			t.Errorf("retries %d: %d attempts, want %d", retries, n, want)
		}
		if n := len(f.waits()); n != want-1 {
			t.Errorf("retries %d: %d waits, want %d", retries, n, want-1)
		}
	}
}

func TestNetworkErrorIsUnavailable(t *testing.T) {
	f := setup(t, 2)
	f.srv.Close()
	_, err := f.d.Send(context.Background(), f.acc, sendReq(event.SendRequest{Phone: customer, Text: "oi"}))
	if commandCode(err) != event.CodeUnavailable || !strings.Contains(err.Error(), "meta unreachable") {
		t.Errorf("%v, want unavailable", err)
	}
	if n := len(f.waits()); n != 1 {
		t.Errorf("%d waits, want 1 (2 attempts)", n)
	}
}

func TestErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
		contains   string
	}{
		{"error_131047_outside_window.json", "", 400, event.CodeOutsideWindow, "template"},
		{"error_130429_rate_limit.json", "", 400, event.CodeRateLimited, "Rate limit hit"},
		{"error_131056_pair_rate_limit.json", "", 400, event.CodeRateLimited, "pair rate limit"},
		{"http 429 without code", `{}`, 429, event.CodeRateLimited, ""},
		{"error_131026_undeliverable.json", "", 400, event.CodeNotOnWhatsApp, "undeliverable"},
		{"error_132001_template_missing.json", "", 400, event.CodeBadRequest, "does not exist in pt_BR"},
		{"error_100_invalid_parameter.json", "", 400, event.CodeBadRequest, "Invalid parameter"},
		{"131008 required parameter", metafake.ErrorBody(131008, "(#131008) Required parameter is missing", ""), 400, event.CodeBadRequest, "Required parameter"},
		{"error_190_token_expired.json", "", 401, event.CodeProviderError, "access token rejected"},
		{"http 401 without body", "", 401, event.CodeProviderError, "access token rejected"},
		{"error_131000_something_went_wrong.json", "", 500, event.CodeUnavailable, "meta unreachable"},
		{"http 502 html", "<html>bad gateway</html>", 502, event.CodeUnavailable, "meta unreachable"},
		{"368 temporarily blocked", metafake.ErrorBody(368, "Temporarily blocked for policies violations", ""), 400, event.CodeProviderError, "368"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t, 1)
			body := tc.body
			if strings.HasSuffix(tc.name, ".json") {
				body = string(testdata(t, tc.name))
			}
			f.srv.FailNext(1, tc.status, body)
			_, err := f.d.Send(context.Background(), f.acc, sendReq(event.SendRequest{Phone: customer, Text: "oi"}))
			if commandCode(err) != tc.code || !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("%v, want %s containing %q", err, tc.code, tc.contains)
			}
		})
	}
}

func TestSecretsNeverInErrorsOrLogs(t *testing.T) {
	f := setup(t, 2)
	ctx := context.Background()
	var errs []error
	// Meta's message echoing the token (it never should, but a proxy
	// might), an outage, a rate limit, a wrong token, bad webhooks.
	f.srv.FailNext(2, 400, metafake.ErrorBody(4, "(#4) rate limited for token "+token+" app "+appSecret, ""))
	_, err := f.d.Send(ctx, f.acc, sendReq(event.SendRequest{Phone: customer, Text: "oi"}))
	errs = append(errs, err)
	f.srv.FailNext(1, 400, metafake.ErrorBody(100, "(#100) bad token "+token, ""))
	_, err = f.d.Send(ctx, f.acc, sendReq(event.SendRequest{Phone: customer, Text: "oi"}))
	errs = append(errs, err)
	f.srv.Outage(true)
	_, err = f.d.Status(ctx, f.acc)
	errs = append(errs, err)
	f.srv.Outage(false)
	wrong := account(mentorado)
	wrong.Meta.AccessToken = token + "-old"
	_, err = f.d.Send(ctx, wrong, sendReq(event.SendRequest{Phone: customer, Text: "oi"}))
	errs = append(errs, err)
	body := testdata(t, "mixed_foreign_number.json")
	_, err = f.d.Webhook(ctx, f.acc, signedRequest("wrong", body), body)
	errs = append(errs, err)
	_, err = f.d.VerifyWebhook(f.acc, map[string][]string{"hub.mode": {"subscribe"}, "hub.verify_token": {"nope"}, "hub.challenge": {"1"}})
	errs = append(errs, err)
	webhook(t, f.d, f.acc, body) // logs the dropped change

	logs := f.logs.String()
	if !strings.Contains(logs, "retrying") || !strings.Contains(logs, "dropped") {
		t.Fatalf("the scenario logged nothing to check:\n%s", logs)
	}
	for i, err := range errs {
		if err == nil {
			t.Fatalf("step %d did not fail", i)
		}
	}
	for _, secret := range []string{token, appSecret, verifyTok, "S3CRET"} {
		if strings.Contains(logs, secret) {
			t.Errorf("a secret reached the logs:\n%s", logs)
		}
		for i, err := range errs {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("step %d: a secret reached the error: %v", i, err)
			}
		}
	}
}
