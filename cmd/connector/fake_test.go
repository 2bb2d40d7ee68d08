package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.mau.fi/whatsmeow"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

// TestFakeSwitchRefusesHalfSettings: the fake WhatsApp switch needs both
// settings, valid; anything else stops the connector before it connects
// anywhere (DATABASE_URL here points nowhere).
func TestFakeSwitchRefusesHalfSettings(t *testing.T) {
	key := strings.Repeat("ab", 32)
	cases := map[string]map[string]string{
		"ZAPBUS_WA_FAKE_ROOT_KEY is not": {"ZAPBUS_WA_FAKE_ADDR": "127.0.0.1:5290"},
		"ZAPBUS_WA_FAKE_ADDR is not":     {"ZAPBUS_WA_FAKE_ROOT_KEY": key},
		"32-byte":                        {"ZAPBUS_WA_FAKE_ADDR": "127.0.0.1:5290", "ZAPBUS_WA_FAKE_ROOT_KEY": "abcd"},
		"real root":                      {"ZAPBUS_WA_FAKE_ADDR": "127.0.0.1:5290", "ZAPBUS_WA_FAKE_ROOT_KEY": hex.EncodeToString(whatsmeow.WACertPubKey[:])},
		"host:port":                      {"ZAPBUS_WA_FAKE_ADDR": "wafake", "ZAPBUS_WA_FAKE_ROOT_KEY": key},
	}
	for want, env := range cases {
		env["DATABASE_URL"] = "postgres://127.0.0.1:1/none"
		env["ZAPBUS_HTTP_ADDR"] = "off"
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := run(ctx, nil, func(k string) string { return env[k] }, io.Discard)
		cancel()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: err %v, want %q", env, err, want)
		}
	}
	// Neither set: the real WhatsApp, no fake.
	s, err := loadSettings(nil, func(k string) string { return map[string]string{"DATABASE_URL": "postgres://x"}[k] }, io.Discard)
	if err != nil || s.FakeWA {
		t.Fatalf("without the settings: fake %v, err %v", s.FakeWA, err)
	}
}

// fakeProc is cmd/wafake running as its own process.
type fakeProc struct {
	addr, control, root, token string
}

func startFakeProcess(t *testing.T) fakeProc {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "wafake")
	build := exec.Command("go", "build", "-o", bin, "../wafake")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build wafake: %v\n%s", err, out)
	}
	f := fakeProc{token: "test-token-" + t.Name()}
	cmd := exec.Command(bin)
	cmd.Env = []string{"WAFAKE_ADDR=127.0.0.1:0", "WAFAKE_CONTROL_ADDR=127.0.0.1:0",
		"WAFAKE_ROOT_KEY_FILE=" + filepath.Join(dir, "root.key"), "WAFAKE_TOKEN=" + f.token}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := map[string]*string{"chat/media:": &f.addr, "control:": &f.control, "root public key:": &f.root}
	sc := bufio.NewScanner(stdout)
	for (f.addr == "" || f.control == "" || f.root == "") && sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		for prefix, dst := range lines {
			if v, ok := strings.CutPrefix(line, prefix); ok {
				*dst = strings.TrimSpace(v)
			}
		}
	}
	if f.addr == "" || f.control == "" || f.root == "" {
		t.Fatalf("wafake did not print its addresses: %+v", f)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return f
}

func (f fakeProc) do(t *testing.T, method, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, f.control+path, body)
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// TestConnectorPairsThroughFakeProcess: a connector given the fake
// process's address and root key pairs a session through it (pairing
// code typed by the fake phone), decrypts and acknowledges an inbound
// message, warns at start, and /readyz says it talks to a FAKE WhatsApp.
func TestConnectorPairsThroughFakeProcess(t *testing.T) {
	fake := startFakeProcess(t)
	dsn, natsURL := testenv.Postgres(t), testenv.NATS(t)
	env := map[string]string{
		"DATABASE_URL":            dsn,
		"NATS_URL":                natsURL,
		"ZAPBUS_NATS_PROVISION":   "true",
		"ZAPBUS_HTTP_ADDR":        "127.0.0.1:0",
		"ZAPBUS_LEASE_TTL":        "2s",
		"ZAPBUS_WA_FAKE_ADDR":     fake.addr,
		"ZAPBUS_WA_FAKE_ROOT_KEY": fake.root,
	}
	saved := whatsmeow.WACertPubKey
	t.Cleanup(func() { whatsmeow.WACertPubKey = saved })
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuf{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, out) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(30 * time.Second):
			t.Error("connector did not stop")
		}
	}()
	addrRE := regexp.MustCompile(`"http":"([^"]+)"`)
	var readyBody string
	testenv.Eventually(t, 60*time.Second, func() bool {
		m := addrRE.FindStringSubmatch(out.String())
		if m == nil {
			return false
		}
		resp, err := http.Get("http://" + m[1] + "/readyz")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		readyBody = string(b)
		return resp.StatusCode == http.StatusOK && resp.Header.Get("X-Zapbus-WhatsApp") == "fake"
	}, "readyz")
	if !strings.Contains(readyBody, "FAKE WhatsApp at "+fake.addr) {
		t.Fatalf("readyz body %q does not name the fake", readyBody)
	}
	if !regexp.MustCompile(`"level":"warn"[^\n]*FAKE WhatsApp`).MatchString(out.String()) {
		t.Fatalf("no warning about the fake at start:\n%s", out.String())
	}

	db, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m, err := db.Mentorados().Create(context.Background(), "Ana", []byte("hash-"+t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const account, contact = "5511970001234", "5521988887777"
	req, _ := json.Marshal(event.ConnectRequest{Method: event.ConnectPhone, Phone: account})
	msg, err := nc.Request(event.CommandSubject(m, event.VerbConnect), req, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var reply event.Reply
	if err := json.Unmarshal(msg.Data, &reply); err != nil || reply.Status == nil || reply.Status.PairingCode == "" {
		t.Fatalf("connect reply %s (%v)", msg.Data, err)
	}
	if code := fake.do(t, "POST", "/v1/pair-code", map[string]string{"phone": account, "code": reply.Status.PairingCode}, nil); code != http.StatusOK {
		t.Fatalf("pair-code: %d", code)
	}
	testenv.Eventually(t, 60*time.Second, func() bool {
		var got struct {
			Accounts []struct {
				Phone     string
				Connected bool
			}
		}
		fake.do(t, "GET", "/v1/accounts", nil, &got)
		for _, a := range got.Accounts {
			if a.Phone == account && a.Connected {
				return true
			}
		}
		return false
	}, "the account connected at the fake")

	// The fake accepts messages for the account once its client uploaded
	// its prekeys, a moment after it connected.
	var sent struct{ ID string }
	testenv.Eventually(t, 30*time.Second, func() bool {
		return fake.do(t, "POST", "/v1/inbound", map[string]any{"account": account, "from": contact, "text": "oi", "push_name": "Bia"}, &sent) == http.StatusOK && sent.ID != ""
	}, "the fake phone sent a message")
	testenv.Eventually(t, 60*time.Second, func() bool {
		var l struct {
			Sent []struct {
				ID    string
				Acked bool
			}
		}
		fake.do(t, "GET", "/v1/ledger", nil, &l)
		return len(l.Sent) == 1 && l.Sent[0].ID == sent.ID && l.Sent[0].Acked
	}, "the connector acknowledged the inbound message")
}
