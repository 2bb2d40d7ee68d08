package persister

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
)

// TestApplyMedia: a media message stores its metadata with media_state
// pending; its media event moves it to stored or failed; a redelivered
// message or media event never moves it back; a media event before its
// message waits and is applied when the message lands; a malformed media
// event is poison.
func TestApplyMedia(t *testing.T) {
	p := newTestPersister(t, 2)
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	seq := uint64(0)
	apply := func(envs ...event.Envelope) []error {
		t.Helper()
		var items []Item
		for _, e := range envs {
			seq++
			items = append(items, item(t, e, seq))
		}
		poison, err := p.Apply(ctx, items)
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		return poison
	}
	row := func(id string) string {
		t.Helper()
		var s string
		err := p.db.Pool.QueryRow(ctx, `SELECT concat_ws('|', media_id, media_mime, coalesce(media_size::text, '-'), coalesce(media_file_name, '-'),
			coalesce(media_seconds::text, '-'), coalesce(media_width::text, '-'), media_round::text,
			coalesce(encode(media_thumbnail, 'hex'), '-'), coalesce(media_state, '-'), coalesce(media_error, '-'))
			FROM whatsapp_messages WHERE wa_message_id = $1`, id).Scan(&s)
		if err != nil {
			t.Fatalf("row %s: %v", id, err)
		}
		return s
	}
	mid := strings.Repeat("ab", 32)
	image := func(id string) event.Envelope {
		at = at.Add(time.Second)
		return mustEnv(t, 1, event.MessageEventID(1, id), at, &event.Message{WAID: id, ChatJID: "5511911112222@s.whatsapp.net",
			SenderJID: "5511911112222@s.whatsapp.net", Phone: "5511911112222", Direction: event.DirectionIn,
			Kind: event.KindPTT, Timestamp: at, Status: event.MessageReceived,
			Media: &event.Media{ID: mid, MIME: "audio/ogg; codecs=opus", Size: 100, Seconds: 7, Thumbnail: []byte{1, 2}}})
	}
	done := func(id string, st event.MediaState, size int64) event.Envelope {
		d := &event.MediaDone{WAID: id, ChatJID: "5511911112222@s.whatsapp.net", State: st, MediaID: mid, Size: size}
		if st == event.MediaFailed {
			d.Reason = "gone"
		}
		return mustEnv(t, 1, event.MediaEventID(1, id)+string(st), at, d)
	}
	const base = "|audio/ogg; codecs=opus|"

	apply(image("M1"))
	if got, want := row("M1"), mid+base+"100|-|7|-|false|0102|pending|-"; got != want {
		t.Fatalf("after message: %s, want %s", got, want)
	}
	apply(done("M1", event.MediaStored, 101))
	want := mid + base + "101|-|7|-|false|0102|stored|-"
	if got := row("M1"); got != want {
		t.Fatalf("after stored: %s, want %s", got, want)
	}
	// Redelivered message, then a late failed event: nothing moves back.
	apply(image("M1"), done("M1", event.MediaFailed, 0))
	apply(image("M1"))
	if got := row("M1"); got != want {
		t.Fatalf("after redelivery: %s, want %s", got, want)
	}

	// Media event first: it waits, then applies when the message lands.
	apply(done("M2", event.MediaFailed, 0))
	var n int
	if err := p.db.Pool.QueryRow(ctx, `SELECT count(*) FROM whatsapp_pending_media WHERE wa_message_id = 'M2'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("pending media rows %d (%v)", n, err)
	}
	apply(image("M2"))
	if got, want := row("M2"), mid+base+"100|-|7|-|false|0102|failed|gone"; got != want {
		t.Fatalf("after late message: %s, want %s", got, want)
	}
	if err := p.db.Pool.QueryRow(ctx, `SELECT count(*) FROM whatsapp_pending_media`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("pending media left: %d (%v)", n, err)
	}
	// Stored after failed, in the same batch as a redelivered message.
	apply(image("M2"), done("M2", event.MediaStored, 0))
	if got, want := row("M2"), mid+base+"100|-|7|-|false|0102|stored|-"; got != want {
		t.Fatalf("after stored: %s, want %s", got, want)
	}
	// Media event and message in one batch, event first.
	apply(done("M3", event.MediaStored, 0), image("M3"))
	if got, want := row("M3"), mid+base+"100|-|7|-|false|0102|stored|-"; got != want {
		t.Fatalf("same batch: %s, want %s", got, want)
	}

	// Poison: a media event with a bad state, or of an unknown mentorado.
	bad := item(t, done("M1", event.MediaStored, 0), 99)
	bad.Data = []byte(strings.Replace(string(bad.Data), `"state":"stored"`, `"state":"pending"`, 1))
	other := done("M1", event.MediaFailed, 0)
	other.MentoradoID = 7
	poison, err := p.Apply(ctx, []Item{bad, item(t, other, 100), item(t, done("M4", event.MediaStored, 0), 101)})
	if err != nil {
		t.Fatal(err)
	}
	if poison[0] == nil || poison[1] == nil || poison[2] != nil {
		t.Fatalf("poison = %v", poison)
	}
	if got := row("M1"); got != want {
		t.Fatalf("after poison: %s, want %s", got, want)
	}
}
