package store_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/store"
)

// TestMessageMediaReads: media metadata reads back on listings and by id;
// reactions aggregate the latest per sender; revoked messages are not
// unread; lookups are scoped to the mentorado.
func TestMessageMediaReads(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	m, _ := db.Mentorados().Create(ctx, "m", nil)
	other, _ := db.Mentorados().Create(ctx, "o", nil)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	msg := func(mm int64, id string, at time.Duration, dir, kind, body string) store.MessageWrite {
		return store.MessageWrite{MentoradoID: mm, WAMessageID: id, ChatJID: "5511@s.whatsapp.net", SenderJID: "5511@s.whatsapp.net",
			Phone: ptr("5511"), Direction: dir, Kind: kind, Body: body, Status: "received", StatusRank: 1, SentAt: base.Add(at)}
	}
	img := msg(m, "img", time.Minute, "in", "image", "")
	img.MediaID, img.MediaMIME, img.MediaSize = ptr(strings.Repeat("cd", 32)), ptr("image/jpeg"), ptr(int64(2048))
	img.MediaWidth, img.MediaHeight, img.MediaThumbnail, img.MediaState = ptr(int32(10)), ptr(int32(20)), []byte{0xff, 0xd8}, ptr("pending")
	seedMessage(t, db, img)
	seedMessage(t, db, msg(m, "txt", 2*time.Minute, "in", "text", "oi"))
	rev := msg(m, "gone", 3*time.Minute, "in", "text", "")
	seedMessage(t, db, rev)
	exec(t, db, `UPDATE whatsapp_messages SET revoked = true WHERE wa_message_id = 'gone'`)
	seedMessage(t, db, msg(other, "img", time.Minute, "in", "text", "not yours"))
	// Reactions on img: A 👍 then ❤️ (latest wins), B 👍, C 👍 then removed,
	// the mentorado 😂 from two devices (one sender, latest wins).
	react := func(id, sender, dir, emoji string, at time.Duration) {
		w := msg(m, id, at, dir, "reaction", emoji)
		w.SenderJID, w.TargetID = sender, ptr("img")
		seedMessage(t, db, w)
	}
	react("r1", "a@s.whatsapp.net", "in", "👍", 10*time.Minute)
	react("r2", "a@s.whatsapp.net", "in", "❤️", 11*time.Minute)
	react("r3", "b@s.whatsapp.net", "in", "👍", 12*time.Minute)
	react("r4", "c@s.whatsapp.net", "in", "👍", 13*time.Minute)
	react("r5", "c@s.whatsapp.net", "in", "", 14*time.Minute)
	react("r6", "me:1@s.whatsapp.net", "out", "😮", 15*time.Minute)
	react("r7", "me:2@s.whatsapp.net", "out", "😂", 16*time.Minute)

	q := db.Messages()
	r, err := q.ByWAID(ctx, m, "img")
	if err != nil {
		t.Fatal(err)
	}
	want := &store.MediaRow{ID: strings.Repeat("cd", 32), MIME: "image/jpeg", Size: 2048, Width: 10, Height: 20, HasThumbnail: true, State: "pending"}
	if !reflect.DeepEqual(r.Media, want) || r.ChatJID != "5511@s.whatsapp.net" {
		t.Fatalf("by id: %+v media %+v", r, r.Media)
	}
	if r, err := q.ByWAID(ctx, m, "txt"); err != nil || r.Media != nil || r.Body != "oi" {
		t.Fatalf("text by id: %+v %v", r, err)
	}
	if _, err := q.ByWAID(ctx, m, "r1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("reaction row by id: %v", err)
	}
	if r, err := q.ByWAID(ctx, other, "img"); err != nil || r.Body != "not yours" || r.Media != nil {
		t.Fatalf("other tenant's row: %+v %v", r, err)
	}
	if _, err := q.ByWAID(ctx, m, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	if b, err := q.Thumbnail(ctx, m, "img"); err != nil || string(b) != "\xff\xd8" {
		t.Fatalf("thumbnail %x %v", b, err)
	}
	if _, err := q.Thumbnail(ctx, other, "img"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other tenant's thumbnail: %v", err)
	}

	rs, err := q.Reactions(ctx, m, []string{"img", "txt"})
	if err != nil {
		t.Fatal(err)
	}
	wantR := map[string][]store.Reaction{"img": {{Emoji: "👍", Count: 1}, {Emoji: "❤️", Count: 1}, {Emoji: "😂", Count: 1, Mine: true}}}
	// Equal counts order by emoji; compute the expectation the same way.
	if len(rs) != 1 || len(rs["img"]) != 3 {
		t.Fatalf("reactions %+v", rs)
	}
	got := map[string]store.Reaction{}
	for _, x := range rs["img"] {
		got[x.Emoji] = x
	}
	for _, x := range wantR["img"] {
		if got[x.Emoji] != x {
			t.Fatalf("reaction %s: got %+v want %+v (all %+v)", x.Emoji, got[x.Emoji], x, rs)
		}
	}
	if rs, err := q.Reactions(ctx, other, []string{"img"}); err != nil || len(rs) != 0 {
		t.Fatalf("other tenant's reactions %+v %v", rs, err)
	}

	// Unread: img and txt, not the revoked one, not the reactions.
	un, err := q.Unread(ctx, m, "5511", 100)
	if err != nil || len(un) != 2 || un[0].WAMessageID != "img" || un[1].WAMessageID != "txt" || un[0].SenderJID != "5511@s.whatsapp.net" {
		t.Fatalf("unread %+v %v", un, err)
	}
	convs, err := q.Conversations(ctx, m, nil, 10)
	if err != nil || len(convs) != 1 || convs[0].Unread != 2 {
		t.Fatalf("conversations %+v %v", convs, err)
	}
	if last := convs[0].Last; last.WAMessageID != "gone" || !last.Revoked {
		t.Fatalf("last message %+v", last)
	}
	list, err := q.Conversation(ctx, m, "5511", nil, 10)
	if err != nil || len(list) != 3 || list[2].Media == nil || list[2].Media.MIME != "image/jpeg" {
		t.Fatalf("conversation %+v %v", list, err)
	}
}
