package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/store"
)

func TestMediaObjectQueries(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	q := db.MediaObjects()
	var ms []int64
	for _, name := range []string{"ana", "bia", "caio"} {
		id, err := db.Mentorados().Create(ctx, name, []byte("hash-"+name))
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, id)
	}
	a, b, c := ms[0], ms[1], ms[2]
	id1 := strings.Repeat("a", 64)
	id2 := strings.Repeat("b", 64)

	created, err := q.Record(ctx, a, id1, 1000, "image/jpeg", store.MediaDownload)
	if err != nil || !created {
		t.Fatalf("record: %v %v", created, err)
	}
	// A replayed download or the same upload again: no new row, first kept.
	created, err = q.Record(ctx, a, id1, 1000, "application/octet-stream", store.MediaUpload)
	if err != nil || created {
		t.Fatalf("record again: created=%v %v", created, err)
	}
	got, err := q.Get(ctx, a, id1)
	if err != nil || got.Size != 1000 || got.MIME != "image/jpeg" || got.Origin != store.MediaDownload || got.Created.IsZero() {
		t.Fatalf("get: %+v %v", got, err)
	}
	if _, err := q.Record(ctx, a, id2, 250, "audio/ogg; codecs=opus", store.MediaUpload); err != nil {
		t.Fatal(err)
	}
	// The same file for another tenant is its own row.
	if created, err := q.Record(ctx, b, id1, 1000, "image/jpeg", store.MediaDownload); err != nil || !created {
		t.Fatalf("record for b: %v %v", created, err)
	}
	if _, err := q.Get(ctx, c, id1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("c's get of a's file: %v, want ErrNotFound", err)
	}
	if _, err := q.Record(ctx, a, id2, 1, "x/y", "sideload"); err == nil {
		t.Fatal("an unknown origin was recorded")
	}
	if _, err := q.Record(ctx, 999_999, id1, 1, "image/png", store.MediaUpload); err == nil {
		t.Fatal("a file of an unknown mentorado was recorded")
	}

	usage, err := q.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]media.Usage{a: {Files: 2, Bytes: 1250}, b: {Files: 1, Bytes: 1000}}
	if len(usage) != len(want) || usage[a] != want[a] || usage[b] != want[b] {
		t.Fatalf("usage %v, want %v", usage, want)
	}

	// The collector exposes the same numbers on a scrape.
	reg := prometheus.NewRegistry()
	reg.MustRegister(media.NewUsageCollector(q.Usage))
	if got := gauges(t, reg); got["zapbus_media_stored_bytes"][a] != 1250 || got["zapbus_media_stored_files"][a] != 2 ||
		got["zapbus_media_stored_bytes"][b] != 1000 || len(got["zapbus_media_stored_files"]) != 2 {
		t.Fatalf("metrics %v", got)
	}

	if err := q.Delete(ctx, a, id2); err != nil {
		t.Fatal(err)
	}
	if err := q.Delete(ctx, a, id2); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := q.Get(ctx, a, id2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	n, err := q.DeleteAll(ctx, a)
	if err != nil || n != 1 {
		t.Fatalf("delete all: %d %v", n, err)
	}
	if _, err := q.Get(ctx, b, id1); err != nil {
		t.Fatalf("b's row after a's DeleteAll: %v", err)
	}
	if got := gauges(t, reg); len(got["zapbus_media_stored_bytes"]) != 1 || got["zapbus_media_stored_bytes"][b] != 1000 {
		t.Fatalf("metrics after delete %v", got)
	}

	// Deleting a mentorado deletes its ledger (ON DELETE CASCADE).
	exec(t, db, `DELETE FROM mentorados WHERE id = $1`, b)
	if usage, err := q.Usage(ctx); err != nil || len(usage) != 0 {
		t.Fatalf("usage after the mentorado was deleted: %v %v", usage, err)
	}
}

// gauges gathers reg: metric name → mentorado → value.
func gauges(t *testing.T, reg *prometheus.Registry) map[string]map[int64]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[int64]float64{}
	for _, mf := range mfs {
		out[mf.GetName()] = map[int64]float64{}
		for _, m := range mf.GetMetric() {
			var id int64
			for _, l := range m.GetLabel() {
				if l.GetName() == "mentorado" {
					for _, ch := range l.GetValue() {
						id = id*10 + int64(ch-'0')
					}
				}
			}
			out[mf.GetName()][id] = m.GetGauge().GetValue()
		}
	}
	return out
}
