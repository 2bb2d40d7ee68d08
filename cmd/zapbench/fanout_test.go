package main

import (
	"testing"
	"time"
)

func TestEventNumber(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		ok   bool
	}{
		{`data: {"v":1,"data":{"wa_id":"FO1234","chat_jid":"x"}}`, 1234, true},
		{`data: {"data":{"wa_id":"ABC"}}`, 0, false},
		{`data: {"data":{"wa_id":"FO12`, 0, false},
		{`: ping`, 0, false},
	} {
		got, ok := eventNumber([]byte(c.in))
		if got != c.want || ok != c.ok {
			t.Errorf("eventNumber(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestPercentileMs(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if got := percentileMs(d, 50); got != 50 {
		t.Errorf("p50 %v", got)
	}
	if got := percentileMs(d, 99); got != 99 {
		t.Errorf("p99 %v", got)
	}
	if got := percentileMs(d, 100); got != 100 {
		t.Errorf("max %v", got)
	}
	if got := percentileMs(nil, 99); got != 0 {
		t.Errorf("empty %v", got)
	}
}
