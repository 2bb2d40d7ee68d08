package media_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zapbus/zapbus/internal/media"
)

func TestUsageCollector(t *testing.T) {
	usage := map[int64]media.Usage{7: {Files: 3, Bytes: 4096}, 12: {Files: 1, Bytes: 10}}
	var fail error
	c := media.NewUsageCollector(func(context.Context) (map[int64]media.Usage, error) { return usage, fail })
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetType().String() != "GAUGE" {
			t.Errorf("%s is a %s, want a gauge", mf.GetName(), mf.GetType())
		}
		for _, m := range mf.GetMetric() {
			got[mf.GetName()+"/"+m.GetLabel()[0].GetName()+"="+m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"zapbus_media_stored_bytes/mentorado=7": 4096, "zapbus_media_stored_files/mentorado=7": 3,
		"zapbus_media_stored_bytes/mentorado=12": 10, "zapbus_media_stored_files/mentorado=12": 1,
	}
	if len(got) != len(want) {
		t.Fatalf("metrics %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	fail = errors.New("postgres down")
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "postgres down") {
		t.Fatalf("a failed usage read did not reach the scrape: %v", err)
	}
}
