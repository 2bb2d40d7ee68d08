package meta_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/provider/meta"
)

func TestWebhookSignature(t *testing.T) {
	d := meta.New(meta.Config{})
	acc := account(mentorado)
	body := testdata(t, "inbound_text.json")
	ctx := context.Background()

	if _, err := d.Webhook(ctx, acc, signedRequest(appSecret, body), body); err != nil {
		t.Fatalf("good signature refused: %v", err)
	}
	tampered := bytes.Replace(body, []byte("amanhã"), []byte("hoje!!"), 1)
	if bytes.Equal(tampered, body) {
		t.Fatal("test payload did not change")
	}
	noSecret := account(mentorado)
	noSecret.Meta.AppSecret = ""
	badHeader := signedRequest("", body)
	badHeader.Header.Set(meta.SignatureHeader, "sha1="+strings.Repeat("ab", 20))
	for name, tc := range map[string]struct {
		acc  provider.Account
		r    *http.Request
		body []byte
	}{
		"bad secret":       {acc: acc, r: signedRequest("another-app-secret", body), body: body},
		"missing":          {acc: acc, r: signedRequest("", body), body: body},
		"tampered body":    {acc: acc, r: signedRequest(appSecret, body), body: tampered},
		"sha1 header":      {acc: acc, r: badHeader, body: body},
		"account unsigned": {acc: noSecret, r: signedRequest("", body), body: body},
	} {
		t.Run(name, func(t *testing.T) {
			in, err := d.Webhook(ctx, tc.acc, tc.r, tc.body)
			if !errors.Is(err, provider.ErrUnauthenticated) {
				t.Fatalf("got %v, %v; want ErrUnauthenticated", in, err)
			}
			if in != nil {
				t.Error("an unauthenticated delivery produced an Inbound")
			}
		})
	}
}

func TestVerifyWebhook(t *testing.T) {
	d := meta.New(meta.Config{})
	acc := account(mentorado)
	q := func(mode, tok, ch string) url.Values {
		return url.Values{"hub.mode": {mode}, "hub.verify_token": {tok}, "hub.challenge": {ch}}
	}
	got, err := d.VerifyWebhook(acc, q("subscribe", verifyTok, "1158201444"))
	if err != nil || got != "1158201444" {
		t.Fatalf("handshake: %q, %v; want the challenge", got, err)
	}
	for name, v := range map[string]url.Values{
		"wrong token":  q("subscribe", verifyTok+"x", "1158201444"),
		"empty token":  q("subscribe", "", "1158201444"),
		"wrong mode":   q("unsubscribe", verifyTok, "1158201444"),
		"no arguments": {},
	} {
		if _, err := d.VerifyWebhook(acc, v); !errors.Is(err, provider.ErrUnauthenticated) {
			t.Errorf("%s: %v, want ErrUnauthenticated", name, err)
		}
	}
	if _, err := d.VerifyWebhook(acc, q("subscribe", verifyTok, "<script>")); !errors.Is(err, provider.ErrBadPayload) {
		t.Errorf("markup challenge: %v, want ErrBadPayload", err)
	}
	noTok := account(mentorado)
	noTok.Meta.VerifyToken = ""
	if _, err := d.VerifyWebhook(noTok, q("subscribe", "", "1")); !errors.Is(err, provider.ErrUnauthenticated) {
		t.Errorf("account without verify token: %v, want ErrUnauthenticated", err)
	}
}

func TestWebhookBadPayload(t *testing.T) {
	d := meta.New(meta.Config{})
	for name, body := range map[string]string{
		"not json":     `{"object":`,
		"wrong object": `{"object":"page","entry":[]}`,
	} {
		_, err := d.Webhook(context.Background(), account(mentorado), signedRequest(appSecret, []byte(body)), []byte(body))
		if !errors.Is(err, provider.ErrBadPayload) {
			t.Errorf("%s: %v, want ErrBadPayload", name, err)
		}
	}
}

// firstID is the id of the first message or status of a testdata file.
func firstID(t *testing.T, body []byte) string {
	t.Helper()
	var p struct {
		Entry []struct {
			Changes []struct {
				Value struct {
					Messages []struct{ ID string } `json:"messages"`
					Statuses []struct{ ID string } `json:"statuses"`
				} `json:"value"`
			} `json:"changes"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	v := p.Entry[0].Changes[0].Value
	if len(v.Messages) > 0 {
		return v.Messages[0].ID
	}
	return v.Statuses[0].ID
}

const (
	customerJID = customer + "@s.whatsapp.net"
	ourMessage  = "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjQyQjdERkQ2MUQ3QzhENjBGRgA="
)

func TestWebhookTestdataMessages(t *testing.T) {
	d := meta.New(meta.Config{})
	cases := []struct {
		file string
		ts   int64
		want event.Message // WAID, chat, sender, phone, push name, direction, status, timestamp filled below
		ref  *provider.MediaRef
	}{
		{file: "inbound_text.json", ts: 1764460800, want: event.Message{Kind: event.KindText, Text: "Oi! Vocês têm horário amanhã?"}},
		{file: "inbound_image.json", ts: 1764460860, want: event.Message{Kind: event.KindImage, Caption: "Comprovante do pagamento"},
			ref: &provider.MediaRef{Kind: event.KindImage, ProviderID: "1003383421387256", MIME: "image/jpeg", Caption: "Comprovante do pagamento"}},
		{file: "inbound_video.json", ts: 1764460870, want: event.Message{Kind: event.KindVideo, Caption: "Olha isso"},
			ref: &provider.MediaRef{Kind: event.KindVideo, ProviderID: "1166846181421424", MIME: "video/mp4", Caption: "Olha isso"}},
		{file: "inbound_voice.json", ts: 1764460880, want: event.Message{Kind: event.KindPTT},
			ref: &provider.MediaRef{Kind: event.KindPTT, ProviderID: "1429185401432216", MIME: "audio/ogg; codecs=opus"}},
		{file: "inbound_audio.json", ts: 1764460885, want: event.Message{Kind: event.KindAudio},
			ref: &provider.MediaRef{Kind: event.KindAudio, ProviderID: "1429185401432299", MIME: "audio/mpeg"}},
		{file: "inbound_document.json", ts: 1764460890, want: event.Message{Kind: event.KindDocument, Caption: "Contrato assinado"},
			ref: &provider.MediaRef{Kind: event.KindDocument, ProviderID: "1259402542082617", MIME: "application/pdf", FileName: "contrato.pdf", Caption: "Contrato assinado"}},
		{file: "inbound_sticker.json", ts: 1764460895, want: event.Message{Kind: event.KindSticker},
			ref: &provider.MediaRef{Kind: event.KindSticker, ProviderID: "1340164210565591", MIME: "image/webp"}},
		{file: "inbound_reaction.json", ts: 1764460900, want: event.Message{Kind: event.KindReaction, TargetID: ourMessage, Text: "👍"}},
		{file: "inbound_reaction_removed.json", ts: 1764460960, want: event.Message{Kind: event.KindReaction, TargetID: ourMessage}},
		{file: "inbound_reply.json", ts: 1764461000, want: event.Message{Kind: event.KindText, Text: "Pode ser às 15h?", ReplyToID: ourMessage}},
		{file: "inbound_location.json", ts: 1764461060, want: event.Message{Kind: event.KindLocation,
			Text: "MASP\nAv. Paulista, 1578 - Bela Vista, São Paulo - SP\n-23.561414,-46.655881"}},
		{file: "inbound_contacts.json", ts: 1764461120, want: event.Message{Kind: event.KindContact, Text: "João Pereira, Ana Lima"}},
		{file: "inbound_interactive_button_reply.json", ts: 1764461180, want: event.Message{Kind: event.KindText, Text: "Confirmar",
			ReplyToID: "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjk5QUJDREVGMDEyMzQ1Njc4OQA="}},
		{file: "inbound_interactive_list_reply.json", ts: 1764461200, want: event.Message{Kind: event.KindText, Text: "Plano anual",
			ReplyToID: "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjg4QUJDREVGMDEyMzQ1Njc4OQA="}},
		{file: "inbound_button.json", ts: 1764461220, want: event.Message{Kind: event.KindText, Text: "Parar promoções",
			ReplyToID: "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjc3QUJDREVGMDEyMzQ1Njc4OQA="}},
		{file: "inbound_unsupported.json", ts: 1764461240, want: event.Message{Kind: event.KindOther}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			body := testdata(t, tc.file)
			wamid := firstID(t, body)
			in := webhook(t, d, account(mentorado), body)
			if len(in.Rejected) != 0 {
				t.Errorf("rejected: %q", in.Rejected)
			}
			if len(in.Events) != 2 {
				t.Fatalf("%d events, want the message and the sender's contact", len(in.Events))
			}
			at := time.Unix(tc.ts, 0).UTC()
			want := tc.want
			want.WAID, want.ChatJID, want.SenderJID, want.Phone, want.PushName = wamid, customerJID, customerJID, customer, "Maria Souza"
			want.Direction, want.Status, want.Timestamp = event.DirectionIn, event.MessageReceived, at
			env := in.Events[0]
			if env.ID != event.MessageEventID(mentorado, wamid) || env.Type != event.TypeMessage || env.MentoradoID != mentorado || !env.OccurredAt.Equal(at) {
				t.Errorf("message envelope %s %s m%d at %s", env.ID, env.Type, env.MentoradoID, env.OccurredAt)
			}
			got, ok := decode(t, env).(*event.Message)
			if !ok {
				t.Fatalf("payload %T", got)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("message\n got %+v\nwant %+v", *got, want)
			}
			ct := &event.Contact{JID: customerJID, Phone: customer, PushName: "Maria Souza"}
			cenv := in.Events[1]
			if cenv.ID != event.ContactEventID(mentorado, ct, at) || cenv.Type != event.TypeContact {
				t.Errorf("contact envelope %s %s, want %s", cenv.ID, cenv.Type, event.ContactEventID(mentorado, ct, at))
			}
			if gotc := decode(t, cenv).(*event.Contact); !reflect.DeepEqual(gotc, ct) {
				t.Errorf("contact %+v, want %+v", gotc, ct)
			}
			switch {
			case tc.ref == nil && len(in.Media) != 0:
				t.Errorf("media refs %+v on a message without a file", in.Media)
			case tc.ref != nil:
				wantRef := *tc.ref
				wantRef.WAID, wantRef.ChatJID = wamid, customerJID
				if len(in.Media) != 1 || !reflect.DeepEqual(in.Media[0], wantRef) {
					t.Errorf("media refs %+v, want [%+v]", in.Media, wantRef)
				}
				if got.Media != nil {
					t.Error("the driver filled Media; the gateway does once the file is stored")
				}
			}
		})
	}
}

func TestWebhookTestdataStatuses(t *testing.T) {
	d := meta.New(meta.Config{})
	acc := account(mentorado)

	if in := webhook(t, d, acc, testdata(t, "status_sent.json")); len(in.Events) != 0 || len(in.Rejected) != 0 {
		t.Errorf("sent status: %d events, rejected %q; want nothing (the send published the message)", len(in.Events), in.Rejected)
	}
	for _, tc := range []struct {
		file string
		kind event.ReceiptKind
		ts   int64
	}{{"status_delivered.json", event.ReceiptDelivered, 1764461302}, {"status_read.json", event.ReceiptRead, 1764461400}} {
		in := webhook(t, d, acc, testdata(t, tc.file))
		if len(in.Events) != 1 {
			t.Fatalf("%s: %d events", tc.file, len(in.Events))
		}
		env := in.Events[0]
		if want := event.ReceiptEventID(mentorado, tc.kind, false, []string{ourMessage}); env.ID != want {
			t.Errorf("%s: id %s, want %s", tc.file, env.ID, want)
		}
		want := &event.Receipt{MessageIDs: []string{ourMessage}, ChatJID: customerJID, Phone: customer, Kind: tc.kind, Timestamp: time.Unix(tc.ts, 0).UTC()}
		if got := decode(t, env); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, want %+v", tc.file, got, want)
		}
	}

	body := testdata(t, "status_failed.json")
	wamid := firstID(t, body)
	in := webhook(t, d, acc, body)
	if len(in.Events) != 1 {
		t.Fatalf("failed status: %d events", len(in.Events))
	}
	env := in.Events[0]
	if want := event.OutboxEventID(mentorado, wamid, event.MessageFailed); env.ID != want || want != "7:msg:"+wamid+":failed" {
		t.Errorf("failed status id %s, want %s", env.ID, want)
	}
	got := decode(t, env).(*event.Message)
	want := &event.Message{WAID: wamid, ChatJID: customerJID, SenderJID: display + "@s.whatsapp.net", Phone: customer,
		Direction: event.DirectionOut, Kind: event.KindOther, Timestamp: time.Unix(1764461500, 0).UTC(),
		Status: event.MessageFailed, StatusReason: "meta:131047 Re-engagement message"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("failed status\n got %+v\nwant %+v", got, want)
	}
	if got.Text != "" || got.Caption != "" || got.Media != nil {
		t.Error("the failed status carries content; the stored send's content must stay as sent")
	}
}

func TestWebhookDropsForeignNumber(t *testing.T) {
	d := meta.New(meta.Config{})
	body := testdata(t, "mixed_foreign_number.json")

	in := webhook(t, d, account(mentorado), body)
	if len(in.Rejected) != 1 || !strings.Contains(in.Rejected[0], "199999999999999") {
		t.Errorf("rejected %q, want the foreign number's change", in.Rejected)
	}
	if len(in.Events) != 2 {
		t.Fatalf("%d events, want our message and contact", len(in.Events))
	}
	for _, env := range in.Events {
		if env.MentoradoID != mentorado || bytes.Contains(env.Data, []byte("5521998877665")) || bytes.Contains(env.Data, []byte("outro número")) {
			t.Errorf("event %s (m%d) carries the foreign number's message: %s", env.ID, env.MentoradoID, env.Data)
		}
	}

	// The other number's mentorado, with its own account, gets only its part.
	other := account(8)
	other.Meta.PhoneNumberID = "199999999999999"
	in = webhook(t, d, other, body)
	if len(in.Rejected) != 1 || !strings.Contains(in.Rejected[0], pnid) {
		t.Errorf("other: rejected %q", in.Rejected)
	}
	for _, env := range in.Events {
		if env.MentoradoID != 8 || bytes.Contains(env.Data, []byte(customer)) {
			t.Errorf("other: event %s (m%d) %s", env.ID, env.MentoradoID, env.Data)
		}
	}
	if len(in.Events) != 2 {
		t.Errorf("other: %d events", len(in.Events))
	}
}

func TestWebhookReplayKeepsIDs(t *testing.T) {
	d := meta.New(meta.Config{})
	for _, file := range []string{"inbound_text.json", "inbound_image.json", "status_read.json", "status_failed.json"} {
		body := testdata(t, file)
		a := webhook(t, d, account(mentorado), body)
		b := webhook(t, d, account(mentorado), body)
		ids := func(in *provider.Inbound) []string {
			var s []string
			for _, e := range in.Events {
				s = append(s, e.ID)
			}
			return s
		}
		if len(a.Events) == 0 || !slices.Equal(ids(a), ids(b)) || !reflect.DeepEqual(a, b) {
			t.Errorf("%s: replay gave %q then %q", file, ids(a), ids(b))
		}
	}
}

func TestWebhookRejectsBadMessagesKeepsRest(t *testing.T) {
	d := meta.New(meta.Config{})
	var p map[string]any
	if err := json.Unmarshal(testdata(t, "inbound_text.json"), &p); err != nil {
		t.Fatal(err)
	}
	value := p["entry"].([]any)[0].(map[string]any)["changes"].([]any)[0].(map[string]any)["value"].(map[string]any)
	good := value["messages"].([]any)[0].(map[string]any)
	bad := map[string]any{"from": "not-a-phone", "id": "wamid.bad", "timestamp": "1764460801", "type": "text", "text": map[string]any{"body": "x"}}
	noTS := map[string]any{"from": customer, "id": "wamid.nots", "type": "text", "text": map[string]any{"body": "x"}}
	value["messages"] = []any{bad, good, noTS}
	body, _ := json.Marshal(p)
	in := webhook(t, d, account(mentorado), body)
	if len(in.Rejected) != 2 {
		t.Errorf("rejected %q, want the two bad messages", in.Rejected)
	}
	if len(in.Events) != 2 || in.Events[0].ID != event.MessageEventID(mentorado, good["id"].(string)) {
		t.Errorf("events %d, want the good message and its contact", len(in.Events))
	}
}

func TestWebhookIgnoresOtherFields(t *testing.T) {
	d := meta.New(meta.Config{})
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"message_template_status_update",
"value":{"event":"APPROVED","message_template_id":1234,"message_template_name":"lembrete_consulta","message_template_language":"pt_BR","reason":"NONE"}}]}]}`)
	in := webhook(t, d, account(mentorado), body)
	if len(in.Events) != 0 || len(in.Rejected) != 0 || len(in.Media) != 0 {
		t.Errorf("template status update gave %+v", in)
	}
	if _, err := d.Webhook(context.Background(), account(mentorado), nil, body); !errors.Is(err, provider.ErrUnauthenticated) {
		t.Errorf("no request (no header): %v", err)
	}
}
