package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/testenv"
)

func TestControlAddrIsLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:5291": true, "[::1]:5291": true, "localhost:5291": true,
		"0.0.0.0:5291": false, ":5291": false, "10.0.0.7:5291": false, "wafake:5291": false,
	} {
		env := map[string]string{"WAFAKE_CONTROL_ADDR": addr}
		_, err := loadSettings(nil, func(k string) string { return env[k] }, io.Discard)
		if (err == nil) != ok {
			t.Errorf("%s: err %v, want ok=%v", addr, err, ok)
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestControlAPI: every route but /healthz needs the token; requests are
// validated; the ledger starts empty; a message to an account nobody
// paired is refused (it would never be delivered). Pairing and a message
// through a real connector: cmd/connector's TestConnectorPairsThroughFakeProcess.
func TestControlAPI(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"WAFAKE_ADDR": "127.0.0.1:0", "WAFAKE_CONTROL_ADDR": "127.0.0.1:0",
		"WAFAKE_ROOT_KEY_FILE": filepath.Join(dir, "root.key"), "WAFAKE_TOKEN": "secret-token"}
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuf{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, out) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	re := regexp.MustCompile(`control: +(http://\S+)`)
	var base string
	testenv.Eventually(t, 20*time.Second, func() bool {
		m := re.FindStringSubmatch(out.String())
		if m != nil {
			base = m[1]
		}
		return m != nil
	}, "control address")
	if strings.Contains(out.String(), "secret-token") {
		t.Fatal("the given token was printed")
	}
	m := regexp.MustCompile(`root public key: ([0-9a-f]{64})`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no root public key printed:\n%s", out.String())
	}
	// -print-root-key prints the same key from the same file.
	var printed bytes.Buffer
	if err := run(context.Background(), []string{"-print-root-key"}, func(k string) string { return env[k] }, &printed); err != nil || strings.TrimSpace(printed.String()) != m[1] {
		t.Fatalf("-print-root-key: %q, %v; want %s", printed.String(), err, m[1])
	}
	do := func(method, path, token string, body any) (int, map[string]any) {
		var r io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			r = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, base+path, r)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&got)
		return resp.StatusCode, got
	}
	if code, _ := do("GET", "/healthz", "", nil); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	for _, path := range []string{"/v1/ledger", "/v1/accounts"} {
		if code, _ := do("GET", path, "wrong", nil); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d", path, code)
		}
	}
	if code, _ := do("POST", "/v1/inbound", "", map[string]string{"account": "5511970000001", "from": "5521988887777", "text": "x"}); code != http.StatusUnauthorized {
		t.Errorf("inbound without a token: %d", code)
	}
	code, l := do("GET", "/v1/ledger", "secret-token", nil)
	if sent, ok := l["sent"].([]any); code != http.StatusOK || !ok || len(sent) != 0 {
		t.Fatalf("ledger: %d %v", code, l)
	}
	if code, _ := do("POST", "/v1/inbound", "secret-token", map[string]string{"account": "not a phone", "from": "5521988887777", "text": "x"}); code != http.StatusBadRequest {
		t.Errorf("bad phone: %d", code)
	}
	if code, _ := do("POST", "/v1/inbound", "secret-token", map[string]string{"account": "5511970000001", "from": "5521988887777", "text": "x"}); code != http.StatusConflict {
		t.Errorf("inbound to an unpaired account: %d", code)
	}
	if code, _ := do("POST", "/v1/disconnect", "secret-token", map[string]string{"account": "5511970000001", "reason": "drop"}); code != http.StatusNotFound {
		t.Errorf("disconnect of an unknown account: %d", code)
	}
	if code, _ := do("POST", "/v1/redeliver", "secret-token", map[string]string{"id": "nope"}); code != http.StatusNotFound {
		t.Errorf("redeliver of an unknown message: %d", code)
	}
	if code, _ := do("POST", "/v1/registered", "secret-token", map[string]any{"phone": "55 11 8765", "registered": false}); code != http.StatusBadRequest {
		t.Errorf("registered with a bad phone: %d", code)
	}
	if code, got := do("POST", "/v1/registered", "secret-token", map[string]any{"phone": "+551187654321", "registered": true}); code != http.StatusOK || got["phone"] != "551187654321" {
		t.Errorf("registered: %d %v", code, got)
	}
	if code, _ := do("POST", "/v1/fail-sends", "secret-token", map[string]any{"account": "5511970000001", "count": 2}); code != http.StatusNotFound {
		t.Errorf("fail-sends for an unknown account: %d", code)
	}
	if code, _ := do("POST", "/v1/fail-sends", "secret-token", map[string]any{"account": "5511970000001", "count": 0}); code != http.StatusBadRequest {
		t.Errorf("fail-sends with count 0: %d", code)
	}
}
