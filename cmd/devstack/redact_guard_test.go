package main

import (
	"bufio"
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

// logLines splits a JSON log file into lines at debug and lines above.
func logLines(t *testing.T, path string) (debug, above []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4<<20), 4<<20)
	for sc.Scan() {
		var rec struct {
			Level string `json:"level"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line is not JSON: %.200q", sc.Text())
		}
		lvl, err := zerolog.ParseLevel(rec.Level)
		if err != nil {
			t.Fatalf("log line with level %q", rec.Level)
		}
		if lvl <= zerolog.DebugLevel && lvl != zerolog.NoLevel {
			debug = append(debug, sc.Text())
		} else {
			above = append(above, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return debug, above
}

// TestDevstackRedactsPhonesAboveDebug drives the dev binary through
// pairing (QR and phone code), inbound and outbound messages, a receipt, a
// refused pairing and a 401 logout, with its log at debug. Phone
// numbers and JIDs are personal data (LGPD): no full number (and so no JID
// or LID built from it) appears in a line above debug, while debug lines
// may carry them in full.
func TestDevstackRedactsPhonesAboveDebug(t *testing.T) {
	s := startStack(t)
	type created struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	var ana, caio created
	s.do("POST", "/v1/admin/mentorados", s.admin, map[string]string{"name": "Ana"}, &ana)
	s.do("POST", "/v1/admin/mentorados", s.admin, map[string]string{"name": "Caio"}, &caio)
	if ana.Token == "" || caio.Token == "" {
		t.Fatal("mentorados not created")
	}
	const (
		anaPhone  = "5511955554001"
		caioPhone = "5521987654002"
		bia       = "5511912344003"
	)
	connected := func(tok string) {
		t.Helper()
		var st struct {
			Status string `json:"status"`
		}
		testenv.Eventually(t, 30*time.Second, func() bool {
			s.do("GET", "/v1/whatsapp/status", tok, nil, &st)
			return st.Status == "connected"
		}, "never connected: %+v", st)
	}

	// QR pairing with a chosen number, and phone-code pairing.
	if code := s.do("POST", "/v1/whatsapp/connect", ana.Token, map[string]string{"method": "qr"}, nil); code != http.StatusAccepted {
		t.Fatalf("connect: %d", code)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		return s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/scan", ana.ID), s.admin, map[string]string{"phone": anaPhone}, nil) == http.StatusOK
	}, "scan")
	connected(ana.Token)
	if code := s.do("POST", "/v1/whatsapp/connect", caio.Token, map[string]string{"method": "phone", "phone": caioPhone}, nil); code != http.StatusAccepted {
		t.Fatalf("connect by phone: %d", code)
	}
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/pair-code", caio.ID), s.admin, map[string]string{"phone": caioPhone}, nil); code != http.StatusOK {
		t.Fatalf("pair-code: %d", code)
	}
	connected(caio.Token)

	// Inbound, reply, receipt.
	var in struct {
		ID string `json:"id"`
	}
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/inbound", ana.ID), s.admin,
		map[string]string{"phone": bia, "text": "oi", "push_name": "Bia"}, &in); code != http.StatusAccepted {
		t.Fatalf("inbound: %d", code)
	}
	var sent struct {
		ID string `json:"id"`
	}
	if code := s.do("POST", "/v1/messages", ana.Token, map[string]string{"phone": bia, "text": "olá"}, &sent); code != http.StatusCreated {
		t.Fatalf("send: %d", code)
	}
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/receipt", ana.ID), s.admin,
		map[string]string{"phone": bia, "message_id": sent.ID}, nil); code != http.StatusAccepted {
		t.Fatalf("receipt: %d", code)
	}
	type message struct {
		Status string `json:"status"`
	}
	var thread struct {
		Messages []message `json:"messages"`
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		s.do("GET", "/v1/conversations/"+bia+"/messages?limit=1", ana.Token, nil, &thread)
		return len(thread.Messages) == 1 && thread.Messages[0].Status == "delivered"
	}, "reply never delivered: %+v", thread)
	// Pairing Caio's number again for Ana is refused (logged as a warning).
	s.do("POST", "/v1/whatsapp/disconnect", ana.Token, nil, nil)
	s.do("POST", "/v1/whatsapp/logout", ana.Token, nil, nil)
	s.do("POST", "/v1/whatsapp/connect", ana.Token, map[string]string{"method": "phone", "phone": caioPhone}, nil)
	// A 401 logs Caio out.
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/disconnect", caio.ID), s.admin, map[string]any{"reason": 401}, nil); code >= 300 {
		t.Fatalf("kick 401: %d", code)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		var st struct {
			Status string `json:"status"`
		}
		s.do("GET", "/v1/whatsapp/status", caio.Token, nil, &st)
		return st.Status == "logged_out"
	}, "caio logged out")

	debug, above := logLines(t, s.logFile)
	t.Logf("%d log lines at debug, %d above", len(debug), len(above))
	var bad []string
	for _, line := range above {
		for _, p := range []string{anaPhone, caioPhone, bia} {
			if strings.Contains(line, p) {
				bad = append(bad, line)
				break
			}
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%d log lines above debug carry a full phone number or JID:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	// Debug keeps the full values (this also proves the scan sees them).
	full := strings.Join(debug, "\n")
	for _, p := range []string{anaPhone, caioPhone, bia} {
		if !strings.Contains(full, p) {
			t.Errorf("debug log never mentions %s: the capture does not see phone numbers", p)
		}
	}
}
