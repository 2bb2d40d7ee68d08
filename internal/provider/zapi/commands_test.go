package zapi_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/provider/zapi"
	"github.com/zapbus/zapbus/internal/provider/zapi/zapifake"
)

func fakeAccount(inst *zapifake.Instance) provider.Account {
	return provider.Account{Mentorado: mentorado, Provider: event.ProviderZAPI, ZAPI: inst.Credentials(secret)}
}

func wantCode(t *testing.T, err error, code string) *event.CommandError {
	t.Helper()
	var ce *event.CommandError
	if !errors.As(err, &ce) || ce.Code != code {
		t.Fatalf("got %v, want %s", err, code)
	}
	return ce
}

// checkSent validates a sent message as an event would carry it.
func checkSent(t *testing.T, m *event.Message) {
	t.Helper()
	if _, err := event.New(mentorado, event.MessageEventID(mentorado, m.WAID), m.Timestamp, m); err != nil {
		t.Fatalf("sent message is not a valid event: %v", err)
	}
}

func TestPairing(t *testing.T) {
	srv := zapifake.New(t)
	inst := srv.AddInstance(zapifake.InstanceConfig{Phone: "5511988887777"})
	acc := fakeAccount(inst)
	d := newDriver(t, srv.URL())
	ctx := context.Background()

	st, err := d.Status(ctx, acc)
	if err != nil || st.Status != event.StatusDisconnected || !strings.Contains(st.Reason, "You are not connected") {
		t.Fatalf("status %+v, %v", st, err)
	}
	st, err = d.Connect(ctx, acc, event.ConnectRequest{Method: event.ConnectQR})
	if err != nil || st.Status != event.StatusQR {
		t.Fatalf("connect %+v, %v", st, err)
	}
	code, exp, err := d.QR(ctx, acc)
	if err != nil || code == "" || code != inst.QR() || !strings.HasPrefix(code, "2@") {
		t.Fatalf("qr %q, %v (fake shows %q)", code, err, inst.QR())
	}
	if want := time.Date(2026, 11, 30, 0, 0, 20, 0, time.UTC); !exp.Equal(want) {
		t.Fatalf("expires %v", exp)
	}
	st, err = d.Connect(ctx, acc, event.ConnectRequest{Method: event.ConnectPhone, Phone: "5511988887777"})
	if err != nil || st.Status != event.StatusPairing || len(st.PairingCode) != 8 {
		t.Fatalf("phone connect %+v, %v", st, err)
	}
	if _, err := d.PairingCode(ctx, acc, "+55 11"); err == nil {
		t.Fatal("pairing code for a bad phone")
	}
	// Sends need a connected instance.
	_, err = d.Send(ctx, acc, provider.SendRequest{SendRequest: event.SendRequest{Text: "oi"}, To: "5544999999999"})
	wantCode(t, err, event.CodeNotConnected)

	inst.Scan()
	st, err = d.Status(ctx, acc)
	if err != nil || st.Status != event.StatusConnected || st.Phone != "5511988887777" || st.JID != "5511988887777@s.whatsapp.net" {
		t.Fatalf("status after scan %+v, %v", st, err)
	}
	st, err = d.Connect(ctx, acc, event.ConnectRequest{})
	if err != nil || st.Status != event.StatusConnected {
		t.Fatalf("connect when connected %+v, %v", st, err)
	}
	_, _, err = d.QR(ctx, acc)
	wantCode(t, err, event.CodeAlreadyPaired)

	st, err = d.Disconnect(ctx, acc)
	if err != nil || st.Status != event.StatusDisconnected || inst.IsConnected() {
		t.Fatalf("disconnect %+v, %v (fake connected %v)", st, err, inst.IsConnected())
	}
	inst.Scan()
	st, err = d.Logout(ctx, acc)
	if err != nil || st.Status != event.StatusDisconnected || !strings.Contains(st.Reason, "logged out") || inst.IsConnected() {
		t.Fatalf("logout %+v, %v", st, err)
	}
	hook := "https://gateway.example/providers/zapi/42/webhook/" + secret
	if err := d.SetWebhooks(ctx, acc, hook); err != nil {
		t.Fatal(err)
	}
	if u, sentByMe := inst.Webhook(); u != hook || !sentByMe {
		t.Fatalf("fake has webhook %q, sent by me %v", u, sentByMe)
	}
	if srv.Attempts("disconnect") != 2 {
		t.Fatalf("disconnect calls %d", srv.Attempts("disconnect"))
	}
}

func TestSend(t *testing.T) {
	srv := zapifake.New(t)
	inst := srv.AddInstance(zapifake.InstanceConfig{Connected: true, Phone: "5511988887777"})
	acc := fakeAccount(inst)
	d := newDriver(t, srv.URL())
	ctx := context.Background()
	to := "5544999999999"

	m, err := d.Send(ctx, acc, provider.SendRequest{SendRequest: event.SendRequest{Text: "Olá *Maria*", ClientID: "c1"}, To: to, ChatJID: to + "@s.whatsapp.net"})
	if err != nil {
		t.Fatal(err)
	}
	sent := srv.Sent()
	if len(sent) != 1 || sent[0].Endpoint != "send-text" || sent[0].Phone != to || sent[0].Body["message"] != "Olá *Maria*" || sent[0].Body["messageId"] != nil {
		t.Fatalf("fake got %+v", sent)
	}
	if m.WAID != sent[0].MessageID || m.ChatJID != to+"@s.whatsapp.net" || m.SenderJID != "5511988887777@s.whatsapp.net" ||
		m.Direction != event.DirectionOut || m.Status != event.MessageSent || m.Kind != event.KindText || m.Text != "Olá *Maria*" || m.ClientID != "c1" {
		t.Fatalf("message %+v", *m)
	}
	checkSent(t, m)

	t.Run("reply", func(t *testing.T) {
		m, err := d.Send(ctx, acc, provider.SendRequest{SendRequest: event.SendRequest{Text: "sim", ReplyTo: "3EB0X"}, To: to, ReplyToID: "3EB0X"})
		if err != nil {
			t.Fatal(err)
		}
		s := srv.Sent()
		if last := s[len(s)-1]; last.Body["messageId"] != "3EB0X" || m.ReplyToID != "3EB0X" {
			t.Fatalf("reply sent %+v, message %+v", last, *m)
		}
	})

	png := []byte("\x89PNG\r\n\x1a\nnot really a png but bytes")
	file := &provider.MediaFile{ID: strings.Repeat("ab", 32), MIME: "image/png", Size: int64(len(png)), Data: png}
	t.Run("image", func(t *testing.T) {
		m, err := d.Send(ctx, acc, provider.SendRequest{SendRequest: event.SendRequest{Kind: event.KindImage, MediaID: file.ID, Caption: "olha"}, To: to, Media: file})
		if err != nil {
			t.Fatal(err)
		}
		s := srv.Sent()
		last := s[len(s)-1]
		if last.Endpoint != "send-image" || last.MIME != "image/png" || !bytes.Equal(last.Data, png) || last.Body["caption"] != "olha" {
			t.Fatalf("image sent %+v", last)
		}
		if m.Kind != event.KindImage || m.Caption != "olha" || m.Media == nil || m.Media.ID != file.ID || m.WAID != last.MessageID {
			t.Fatalf("message %+v", *m)
		}
		checkSent(t, m)
	})
	t.Run("document", func(t *testing.T) {
		pdf := &provider.MediaFile{ID: strings.Repeat("cd", 32), MIME: "application/pdf", Size: 4, Data: []byte("%PDF")}
		if _, err := d.Send(ctx, acc, provider.SendRequest{SendRequest: event.SendRequest{Kind: event.KindDocument, MediaID: pdf.ID, FileName: "Contrato.PDF"}, To: to, Media: pdf}); err != nil {
			t.Fatal(err)
		}
		s := srv.Sent()
		if last := s[len(s)-1]; last.Endpoint != "send-document/pdf" || last.Body["fileName"] != "Contrato.PDF" || last.MIME != "application/pdf" {
			t.Fatalf("document sent %+v", last)
		}
	})
	t.Run("voice note", func(t *testing.T) {
		ogg := &provider.MediaFile{ID: strings.Repeat("ef", 32), MIME: "audio/ogg; codecs=opus", Size: 4, Data: []byte("OggS")}
		if _, err := d.Send(ctx, acc, provider.SendRequest{SendRequest: event.SendRequest{Kind: event.KindPTT, MediaID: ogg.ID}, To: to, Media: ogg}); err != nil {
			t.Fatal(err)
		}
		s := srv.Sent()
		if last := s[len(s)-1]; last.Endpoint != "send-audio" || last.MIME != "audio/ogg; codecs=opus" || last.Body["waveform"] != true {
			t.Fatalf("audio sent %+v", last)
		}
	})
	t.Run("template not supported", func(t *testing.T) {
		before := srv.TotalAttempts()
		_, err := d.Send(ctx, acc, provider.SendRequest{SendRequest: event.SendRequest{Kind: event.KindTemplate, Template: &event.Template{Name: "x", Language: "pt_BR"}}, To: to})
		wantCode(t, err, event.CodeNotSupported)
		if srv.TotalAttempts() != before {
			t.Fatal("a template send called z-api")
		}
	})
	t.Run("react", func(t *testing.T) {
		req := event.ActionRequest{MessageID: "3EB0AAA", ChatJID: to + "@s.whatsapp.net", Emoji: "👍", ClientID: "r1"}
		m, err := d.React(ctx, acc, req)
		if err != nil {
			t.Fatal(err)
		}
		s := srv.Sent()
		last := s[len(s)-1]
		if last.Endpoint != "send-reaction" || last.Phone != to || last.Body["reaction"] != "👍" || last.Body["messageId"] != "3EB0AAA" {
			t.Fatalf("reaction sent %+v", last)
		}
		if m.Kind != event.KindReaction || m.TargetID != "3EB0AAA" || m.Text != "👍" || m.WAID != last.MessageID {
			t.Fatalf("reaction %+v", *m)
		}
		checkSent(t, m)
		req.Emoji = ""
		if _, err := d.React(ctx, acc, req); err != nil {
			t.Fatal(err)
		}
		s = srv.Sent()
		if last := s[len(s)-1]; last.Endpoint != "send-remove-reaction" {
			t.Fatalf("removal sent %+v", last)
		}
		// Groups are addressed as <id>-group.
		if _, err := d.React(ctx, acc, event.ActionRequest{MessageID: "3EB0BBB", ChatJID: "120363019502650977@g.us", Emoji: "🔥"}); err != nil {
			t.Fatal(err)
		}
		s = srv.Sent()
		if last := s[len(s)-1]; last.Phone != "120363019502650977-group" {
			t.Fatalf("group reaction sent %+v", last)
		}
	})
	t.Run("edit revoke read", func(t *testing.T) {
		chat := to + "@s.whatsapp.net"
		_, err := d.Edit(ctx, acc, event.ActionRequest{MessageID: "3EB0CCC", ChatJID: chat, Text: "novo"})
		wantCode(t, err, event.CodeNotEditable)
		m, err := d.Edit(ctx, acc, event.ActionRequest{MessageID: "3EB0CCC", ChatJID: chat, Text: "novo", FromMe: true})
		if err != nil || m.Kind != event.KindEdit || m.TargetID != "3EB0CCC" {
			t.Fatalf("edit %+v, %v", m, err)
		}
		s := srv.Sent()
		if last := s[len(s)-1]; last.Endpoint != "send-text" || last.Body["editMessageId"] != "3EB0CCC" || last.Body["message"] != "novo" {
			t.Fatalf("edit sent %+v", last)
		}
		m, err = d.Revoke(ctx, acc, event.ActionRequest{MessageID: "3EB0DDD", ChatJID: chat, FromMe: true})
		if err != nil || m.Kind != event.KindRevoke || m.TargetID != "3EB0DDD" || m.WAID == "" {
			t.Fatalf("revoke %+v, %v", m, err)
		}
		checkSent(t, m)
		s = srv.Sent()
		if last := s[len(s)-1]; last.Endpoint != "messages" || last.Body["messageId"] != "3EB0DDD" || last.Body["owner"] != "true" || last.Phone != to {
			t.Fatalf("revoke sent %+v", last)
		}
		if err := d.MarkRead(ctx, acc, event.ReadRequest{ChatJID: chat, Messages: []event.ReadRef{{ID: "A1"}, {ID: "A2"}}}); err != nil {
			t.Fatal(err)
		}
		if srv.Attempts("read-message") != 2 {
			t.Fatalf("read-message calls %d", srv.Attempts("read-message"))
		}
	})
	t.Run("bad request", func(t *testing.T) {
		srv.FailNext(1, http.StatusBadRequest)
		_, err := d.Send(ctx, acc, provider.SendRequest{SendRequest: event.SendRequest{Text: "x"}, To: to})
		ce := wantCode(t, err, event.CodeBadRequest)
		if !strings.Contains(ce.Message, "simulated failure 400") {
			t.Fatalf("message %q lacks z-api's text", ce.Message)
		}
	})
}

func TestRetries(t *testing.T) {
	srv := zapifake.New(t)
	inst := srv.AddInstance(zapifake.InstanceConfig{Connected: true})
	acc := fakeAccount(inst)
	d := newDriver(t, srv.URL())
	ctx := context.Background()
	send := func() (*event.Message, error) {
		return d.Send(ctx, acc, provider.SendRequest{SendRequest: event.SendRequest{Text: "oi"}, To: "5544999999999"})
	}
	if _, err := send(); err != nil { // caches the instance's number
		t.Fatal(err)
	}

	t.Run("500 then success", func(t *testing.T) {
		before := srv.Attempts("send-text")
		srv.FailNext(2, http.StatusInternalServerError)
		m, err := send()
		if err != nil || m.WAID == "" {
			t.Fatalf("%v, %v", m, err)
		}
		if n := srv.Attempts("send-text") - before; n != 3 {
			t.Fatalf("%d attempts, want 3", n)
		}
	})
	t.Run("outage", func(t *testing.T) {
		before := srv.Attempts("status")
		srv.Outage(true)
		_, err := d.Status(ctx, acc)
		srv.Outage(false)
		ce := wantCode(t, err, event.CodeUnavailable)
		if !strings.HasPrefix(ce.Message, "z-api unreachable: ") {
			t.Fatalf("message %q", ce.Message)
		}
		if n := srv.Attempts("status") - before; n != 3 {
			t.Fatalf("%d attempts, want exactly Retries (3)", n)
		}
	})
	t.Run("503 exhausted", func(t *testing.T) {
		before := srv.Attempts("send-text")
		srv.FailNext(3, http.StatusServiceUnavailable)
		_, err := send()
		wantCode(t, err, event.CodeUnavailable)
		if n := srv.Attempts("send-text") - before; n != 3 {
			t.Fatalf("%d attempts", n)
		}
	})
	t.Run("429", func(t *testing.T) {
		before := srv.Attempts("send-text")
		srv.FailNext(3, http.StatusTooManyRequests)
		_, err := send()
		wantCode(t, err, event.CodeRateLimited)
		if n := srv.Attempts("send-text") - before; n != 3 {
			t.Fatalf("%d attempts", n)
		}
	})
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			before := srv.Attempts("send-text")
			srv.FailNext(1, status)
			_, err := send()
			ce := wantCode(t, err, event.CodeProviderError)
			if !strings.Contains(ce.Message, "z-api rejected the instance token or client token") {
				t.Fatalf("message %q", ce.Message)
			}
			if n := srv.Attempts("send-text") - before; n != 1 {
				t.Fatalf("%d attempts; a refusal is not retried", n)
			}
		})
	}
}

// syncBuffer is a log sink safe for the HTTP client's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSecretsStayOut(t *testing.T) {
	srv := zapifake.New(t)
	inst := srv.AddInstance(zapifake.InstanceConfig{Token: "INSTANCETOKEN-SECRET-1", ClientToken: "CLIENTTOKEN-SECRET-2", Connected: true})
	var logs syncBuffer
	d := zapi.New(zapi.Config{BaseURL: srv.URL(), Retries: 2, Backoff: time.Millisecond, Log: zerolog.New(&logs).Level(zerolog.TraceLevel), MediaHTTP: http.DefaultClient})
	ctx := context.Background()
	good := fakeAccount(inst)
	good.ZAPI.WebhookSecret = "WEBHOOKSECRET-SECRET-3"
	wrongClient := fakeAccount(inst)
	wrongClient.ZAPI.ClientToken = "WRONGCLIENT-SECRET-4"
	wrongToken := fakeAccount(inst)
	wrongToken.ZAPI.InstanceToken = "WRONGTOKEN-SECRET-5"
	var errs []error

	// The fake echoes a refused Client-Token, as Z-API does.
	_, err := d.Status(ctx, wrongClient)
	wantCode(t, err, event.CodeProviderError)
	errs = append(errs, err)
	_, err = d.Send(ctx, wrongToken, provider.SendRequest{SendRequest: event.SendRequest{Text: "x"}, To: "5544999999999"})
	wantCode(t, err, event.CodeProviderError)
	errs = append(errs, err)
	srv.Outage(true)
	_, err = d.Status(ctx, good)
	errs = append(errs, err)
	_, _, err = d.QR(ctx, good)
	errs = append(errs, err)
	errs = append(errs, d.SetWebhooks(ctx, good, "https://gw.example/providers/zapi/42/webhook/WEBHOOKSECRET-SECRET-3"))
	srv.Outage(false)
	srv.FailNext(2, http.StatusBadGateway)
	_, err = d.Disconnect(ctx, good)
	errs = append(errs, err)
	_, err = d.Webhook(ctx, good, webhookRequest("WEBHOOKSECRET-SECRET-X", ""), []byte(`{}`))
	errs = append(errs, err)
	// A dead address: the transport error would carry the URL.
	dead := zapi.New(zapi.Config{BaseURL: "http://127.0.0.1:1", Retries: 1, Backoff: time.Millisecond, Log: zerolog.New(&logs).Level(zerolog.TraceLevel)})
	_, err = dead.Status(ctx, good)
	wantCode(t, err, event.CodeUnavailable)
	errs = append(errs, err)

	var all strings.Builder
	for i, err := range errs {
		if err == nil {
			t.Fatalf("call %d did not fail", i)
		}
		all.WriteString(err.Error() + "\n")
	}
	all.WriteString(logs.String())
	if !strings.Contains(all.String(), "[redacted]") || !strings.Contains(logs.String(), "z-api call failed") {
		t.Fatalf("the test saw no redacted URL or no log:\n%s", all.String())
	}
	for _, s := range []string{"SECRET-1", "SECRET-2", "SECRET-3", "SECRET-4", "SECRET-5"} {
		if strings.Contains(all.String(), s) {
			t.Fatalf("%s leaked:\n%s", s, all.String())
		}
	}
}

func TestFetchMedia(t *testing.T) {
	srv := zapifake.New(t)
	inst := srv.AddInstance(zapifake.InstanceConfig{Connected: true})
	acc := fakeAccount(inst)
	d := newDriver(t, srv.URL())
	ctx := context.Background()

	id, body := inst.ReceivedImage("5544999999999", "recibo")
	in := deliver(t, d, acc, body)
	if len(in.Media) != 1 || in.Media[0].WAID != id || in.Media[0].Caption != "recibo" {
		t.Fatalf("inbound %+v", in)
	}
	ref := in.Media[0]
	want, ok := srv.Media(ref.URL)
	if !ok {
		t.Fatalf("fake does not serve %s", ref.URL)
	}
	data, mime, err := d.FetchMedia(ctx, acc, ref, 1<<20)
	if err != nil || !bytes.Equal(data, want) || mime != "image/png" {
		t.Fatalf("fetched %d bytes %q, %v", len(data), mime, err)
	}
	_, _, err = d.FetchMedia(ctx, acc, ref, int64(len(want)-1))
	wantCode(t, err, event.CodeMediaTooLarge)
	if !errors.Is(err, media.ErrTooLarge) {
		t.Fatalf("%v is not media.ErrTooLarge", err)
	}
	missing := ref
	missing.URL = srv.URL() + "/media/gone.png"
	_, _, err = d.FetchMedia(ctx, acc, missing, 1<<20)
	wantCode(t, err, event.CodeMediaNotFound)
	missing.URL = "file:///etc/passwd"
	_, _, err = d.FetchMedia(ctx, acc, missing, 1<<20)
	wantCode(t, err, event.CodeMediaNotFound)

	// The default client refuses the fake's loopback address: a webhook
	// body cannot point the gateway at its own network.
	safe := zapi.New(zapi.Config{BaseURL: srv.URL()})
	_, _, err = safe.FetchMedia(ctx, acc, ref, 1<<20)
	wantCode(t, err, event.CodeUnavailable)
}

func TestFakeWebhookBuilders(t *testing.T) {
	srv := zapifake.New(t)
	inst := srv.AddInstance(zapifake.InstanceConfig{Phone: "5511977776666"})
	acc := fakeAccount(inst)
	d := newDriver(t, srv.URL())

	id, body := inst.ReceivedText("5544999999999", "Maria", "oi")
	in := deliver(t, d, acc, body)
	m := payload[*event.Message](t, in.Events[0])
	if m.WAID != id || m.Text != "oi" || m.PushName != "Maria" || m.ChatJID != "5544999999999@s.whatsapp.net" || len(in.Events) != 2 {
		t.Fatalf("text %+v", *m)
	}
	in = deliver(t, d, acc, inst.Status("5544999999999", []string{"A", "B"}, "READ"))
	r := payload[*event.Receipt](t, in.Events[0])
	if r.Kind != event.ReceiptRead || len(r.MessageIDs) != 2 {
		t.Fatalf("receipt %+v", *r)
	}
	inst.Scan()
	in = deliver(t, d, acc, inst.Connected())
	if c := payload[*event.Connection](t, in.Events[0]); c.Status != event.StatusConnected || c.Phone != "5511977776666" {
		t.Fatalf("connected %+v", *c)
	}
	in = deliver(t, d, acc, inst.Disconnected())
	if c := payload[*event.Connection](t, in.Events[0]); c.Status != event.StatusDisconnected {
		t.Fatalf("disconnected %+v", *c)
	}

	// Deliver and Redeliver post the same bytes.
	var got [][]byte
	var mu sync.Mutex
	target := http.NewServeMux()
	target.HandleFunc("POST /providers/zapi/{mentorado}/webhook/{secret}", func(w http.ResponseWriter, r *http.Request) {
		b := new(bytes.Buffer)
		_, _ = b.ReadFrom(r.Body)
		if _, err := d.Webhook(r.Context(), acc, r, b.Bytes()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		mu.Lock()
		got = append(got, b.Bytes())
		mu.Unlock()
	})
	hs := newServer(t, target)
	ctx := context.Background()
	if st, err := srv.Deliver(ctx, hs+"/providers/zapi/42/webhook/"+secret, body); err != nil || st != 200 {
		t.Fatalf("deliver %d, %v", st, err)
	}
	if st, err := srv.Deliver(ctx, hs+"/providers/zapi/42/webhook/wrong", body); err != nil || st != http.StatusUnauthorized {
		t.Fatalf("deliver with a wrong secret %d, %v", st, err)
	}
	if st, err := srv.Redeliver(ctx, 0); err != nil || st != 200 {
		t.Fatalf("redeliver %d, %v", st, err)
	}
	if len(got) != 2 || !bytes.Equal(got[0], got[1]) || len(srv.Deliveries()) != 3 {
		t.Fatalf("got %d bodies, %d deliveries", len(got), len(srv.Deliveries()))
	}
}
