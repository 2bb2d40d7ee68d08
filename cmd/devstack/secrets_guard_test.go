package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/testenv"
)

// TestDevstackNeverLogsSecrets runs the dev binary with debug logs through
// QR pairing, phone-code pairing, a token rotation and a ticket-opened
// stream, then reads its log file: no admin or mentorado token, stream
// ticket, QR code or pairing code appears in any line above debug.
func TestDevstackNeverLogsSecrets(t *testing.T) {
	s := startStack(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	secrets := map[string]string{"admin token": s.admin}

	type created struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	var ana, caio created
	if code := s.do("POST", "/v1/admin/mentorados", s.admin, map[string]string{"name": "Ana"}, &ana); code != http.StatusCreated {
		t.Fatalf("create mentorado: %d", code)
	}
	if code := s.do("POST", "/v1/admin/mentorados", s.admin, map[string]string{"name": "Caio"}, &caio); code != http.StatusCreated {
		t.Fatalf("create mentorado: %d", code)
	}
	secrets["first token"] = ana.Token
	// Rotate Ana's token: the new one is what she uses from now on.
	var rotated created
	if code := s.do("POST", fmt.Sprintf("/v1/admin/mentorados/%d/tokens", ana.ID), s.admin, nil, &rotated); code != http.StatusCreated || rotated.Token == "" {
		t.Fatalf("rotate token: %d %+v", code, rotated)
	}
	tok := rotated.Token
	secrets["rotated token"] = tok
	secrets["second mentorado token"] = caio.Token

	// A browser's stream: a ticket, then SSE with ?ticket=.
	var tr struct {
		Ticket string `json:"ticket"`
	}
	if code := s.do("POST", "/v1/stream-tickets", tok, nil, &tr); code != http.StatusCreated || tr.Ticket == "" {
		t.Fatalf("stream ticket: %d %+v", code, tr)
	}
	secrets["stream ticket"] = tr.Ticket
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/v1/events?ticket="+tr.Ticket, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("SSE with ticket: %v %v", resp, err)
	}
	resp.Body.Close()
	live := s.sse(ctx, tok, "")

	// QR pairing.
	if code := s.do("POST", "/v1/whatsapp/connect", tok, map[string]string{"method": "qr"}, nil); code != http.StatusAccepted {
		t.Fatalf("connect: %d", code)
	}
	qr := dataField(next(t, live, 30*time.Second, "qr", func(ev sseEvent) bool { return ev.Event == "qr" }), "code")
	if qr == "" {
		t.Fatal("qr event without code")
	}
	addQR := func(code string) {
		secrets["qr code "+code[:8]] = code
		for i, part := range strings.Split(code, ",") {
			if len(part) >= 12 {
				secrets[fmt.Sprintf("qr code %s part %d", code[:8], i)] = part
			}
		}
	}
	addQR(qr)
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/scan", ana.ID), s.admin, nil, nil); code != http.StatusOK {
		t.Fatalf("scan: %d", code)
	}
	next(t, live, 30*time.Second, "connected", func(ev sseEvent) bool {
		return dataField(ev, "type") == "connection" && dataField(ev, "status") == "connected"
	})

	// Phone pairing.
	const number = "5521987650001"
	var st struct {
		PairingCode string `json:"pairing_code"`
	}
	if code := s.do("POST", "/v1/whatsapp/connect", caio.Token, map[string]string{"method": "phone", "phone": number}, &st); code != http.StatusAccepted || st.PairingCode == "" {
		t.Fatalf("connect by phone: %d %+v", code, st)
	}
	secrets["pairing code"] = st.PairingCode
	secrets["pairing code without dash"] = strings.ReplaceAll(st.PairingCode, "-", "")
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/pair-code", caio.ID), s.admin, map[string]string{"phone": number}, nil); code != http.StatusOK {
		t.Fatalf("pair-code: %d", code)
	}
	var status struct {
		Status string `json:"status"`
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		s.do("GET", "/v1/whatsapp/status", caio.Token, nil, &status)
		return status.Status == "connected"
	}, "never connected by phone code: %+v", status)

	f, err := os.Open(s.logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4<<20), 4<<20)
	var lines, above int
	var bad []string
	for sc.Scan() {
		line := sc.Text()
		var rec struct {
			Level string `json:"level"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %.200q", line)
		}
		lines++
		lvl, err := zerolog.ParseLevel(rec.Level)
		if err != nil {
			t.Fatalf("log line with level %q", rec.Level)
		}
		if lvl <= zerolog.DebugLevel && lvl != zerolog.NoLevel {
			continue
		}
		above++
		for what, sec := range secrets {
			if sec != "" && strings.Contains(line, sec) {
				bad = append(bad, what+": "+line)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if lines == 0 || above == 0 {
		t.Fatalf("log file has %d lines, %d above debug: the capture is not working", lines, above)
	}
	t.Logf("scanned %d log lines (%d above debug) for %d secrets", lines, above, len(secrets))
	if len(bad) > 0 {
		t.Fatalf("secrets logged above debug:\n%s", strings.Join(bad, "\n"))
	}
}
