package web

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// rawDo sends a request without following redirects.
func (e *testEnv) rawDo(req *http.Request) response {
	e.t.Helper()
	cl := *e.srv.Client()
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cl.Timeout = 10 * time.Second
	res, err := cl.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<16))
	return response{Status: res.StatusCode, Header: res.Header, Body: b}
}

// assertJSONError fails unless res is an error in the JSON error shape.
func assertJSONError(t *testing.T, what string, res response) {
	t.Helper()
	if res.Status >= 300 && res.Status < 400 {
		t.Errorf("%s: redirect %d to %q", what, res.Status, res.Header.Get("Location"))
		return
	}
	if res.Status < 400 {
		return
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: %d with Content-Type %q: %q", what, res.Status, ct, res.Body)
		return
	}
	var eb errorBody
	if err := json.Unmarshal(res.Body, &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
		t.Errorf("%s: %d body %q is not the error shape", what, res.Status, res.Body)
	}
}

func TestMentoradoNameWithNUL(t *testing.T) {
	e := newEnv(t)
	for _, name := range []string{"Evil\x00Name", "tab\tname", "bell\x07"} {
		res := e.do("POST", "/v1/admin/mentorados", testAdminToken, map[string]string{"name": name})
		if res.Status != 400 {
			t.Fatalf("name %q: %d %s", name, res.Status, res.Body)
		}
		assertJSONError(t, "NUL name", res)
	}
}

func TestWebsocketErrorsAreJSON(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	ws := e.srv.URL + "/v1/ws"
	req := func(h map[string]string) *http.Request {
		r, _ := http.NewRequest("GET", ws, nil)
		r.Header.Set("Authorization", "Bearer "+a.Token)
		for k, v := range h {
			r.Header.Set(k, v)
		}
		return r
	}
	upgrade := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
	with := func(k, v string) map[string]string {
		h := map[string]string{}
		for kk, vv := range upgrade {
			h[kk] = vv
		}
		h[k] = v
		return h
	}
	for _, c := range []struct {
		what   string
		h      map[string]string
		status int
	}{
		{"plain GET", nil, http.StatusUpgradeRequired},
		{"cross origin", with("Origin", "https://evil.example"), http.StatusForbidden},
		{"bad version", with("Sec-WebSocket-Version", "8"), http.StatusBadRequest},
		{"no key", with("Sec-WebSocket-Key", ""), http.StatusBadRequest},
	} {
		res := e.rawDo(req(c.h))
		if res.Status != c.status {
			t.Errorf("%s: %d, want %d: %s", c.what, res.Status, c.status, res.Body)
		}
		assertJSONError(t, "ws "+c.what, res)
	}
}

// Non-canonical paths never redirect (an HTML 3xx to another route); they
// are JSON 404s.
func TestNonCanonicalPathsAreJSON(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	for _, p := range []string{"/v1/conversations//messages", "/v1//whatsapp/status", "/v1/./whatsapp/status",
		"/v1/x/../whatsapp/status", "//v1/conversations", "/v1/conversations/"} {
		r, _ := http.NewRequest("GET", e.srv.URL+p, nil)
		r.Header.Set("Authorization", "Bearer "+a.Token)
		res := e.rawDo(r)
		if res.Status != http.StatusNotFound {
			t.Errorf("%s: %d, want 404: %s", p, res.Status, res.Body)
		}
		assertJSONError(t, p, res)
	}
}

// TestEveryRouteErrorIsJSON walks every route with every method, with and
// without credentials, on canonical and mangled paths: whatever the status,
// an error is the JSON shape and nothing redirects.
func TestEveryRouteErrorIsJSON(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.StreamOpenRate, c.SendRate = -1, -1 })
	a := e.createMentorado("Ana")
	e.fakeConnector(defaultAnswer)
	fill := strings.NewReplacer("{id}", fmt.Sprint(a.ID), "{phone}", "5511988887777", "{file}", "app.js")
	bodies := []string{"", "{", `{"x":1}`, "null", `{"name":"a\u0000b"}`, strings.Repeat("[", 5000)}
	for _, rt := range e.s.routes {
		p := fill.Replace(rt.path)
		paths := []string{p, p + "/", strings.Replace(p, "/", "//", 2), p + "/x", p + "%00"}
		if i := strings.LastIndexByte(p, '/'); i > 0 {
			paths = append(paths, p[:i]+"/./"+p[i+1:], p[:i]+"//"+p[i+1:])
		}
		for _, path := range paths {
			for _, method := range []string{"GET", "POST", "PUT", "DELETE", "PATCH"} {
				for _, tok := range []string{"", a.Token, testAdminToken, "zbt_wrong"} {
					for _, body := range bodies {
						if method == "GET" && body != "" {
							continue
						}
						if rt.path == "/v1/admin/mentorados/{id}" && method == "DELETE" && tok == testAdminToken {
							continue // would delete the tenant under the walk
						}
						if strings.HasSuffix(rt.path, "/tokens") || strings.HasSuffix(rt.path, "/disable") {
							if tok == testAdminToken && method == "POST" {
								continue // would revoke the token under the walk
							}
						}
						r, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
						if err != nil {
							continue // not a URL a client can send
						}
						if tok != "" {
							r.Header.Set("Authorization", "Bearer "+tok)
						}
						if body != "" {
							r.Header.Set("Content-Type", "application/json")
						}
						what := method + " " + path
						if (rt.path == "/v1/events" || rt.path == "/v1/ws") && method == "GET" && tok == a.Token && path == p {
							// A live stream: check the status only.
							res, err := e.srv.Client().Do(r)
							if err != nil {
								t.Fatal(err)
							}
							if res.StatusCode >= 400 {
								b, _ := io.ReadAll(res.Body)
								assertJSONError(t, what, response{Status: res.StatusCode, Header: res.Header, Body: b})
							}
							res.Body.Close()
							continue
						}
						res := e.rawDo(r)
						if res.Status >= 500 {
							t.Errorf("%s (%q): %d %s", what, body, res.Status, res.Body)
						}
						assertJSONError(t, what, res)
					}
				}
			}
		}
	}
}

// A body trickling in slower than BodyReadTimeout is answered with 408 and
// the connection is closed; a handler that takes longer than the deadline
// after reading its body, and a long-lived stream, are unaffected.
func TestBodyReadDeadline(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BodyReadTimeout = time.Second })
	a := e.createMentorado("Ana")
	e.fakeConnector(func(m int64, verb event.Verb, body []byte) event.Reply {
		if verb == event.VerbSend {
			time.Sleep(1500 * time.Millisecond) // a slow WhatsApp, longer than the body deadline
		}
		return defaultAnswer(m, verb, body)
	})
	sse := e.openSSE(bearerAuth(a.Token), "")

	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{", a.Token)
	stop := make(chan struct{})
	go func() { // 1 byte every 200 ms: 40 s for the whole body
		for range 199 {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	close(stop)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("trickled body: %d %s, want 408", res.StatusCode, b)
	}
	assertJSONError(t, "trickle", response{Status: res.StatusCode, Header: res.Header, Body: b})

	// A send whose connector answers after the body deadline still succeeds.
	e.expect(e.do("POST", "/v1/messages", a.Token, map[string]string{"phone": "5511988887777", "text": "slow"}), 201)
	// The stream opened before all this still delivers.
	e.publishMessage(a.ID, "after-deadline", "still live")
	testenv.Eventually(t, 5*time.Second, func() bool { return len(sse.Events()) >= 1 }, "stream alive past the body deadline")
}

// A QR is served only while pairing: once the session connected, qr.png
// is a JSON 404 and a new stream does not get the stale QR.
func TestQRNotServedAfterConnected(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	e.publishQR(a.ID, "2@pairing-qr", time.Now().Add(time.Minute))
	res := e.do("GET", "/v1/whatsapp/qr.png", a.Token, nil)
	if res.Status != 200 || res.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("qr.png while pairing: %d", res.Status)
	}
	if _, err := e.db.Pool.Exec(t.Context(), `UPDATE mentorados SET wa_status = 'qr', wa_status_at = now() WHERE id = $1`, a.ID); err != nil {
		t.Fatal(err)
	}
	e.expect(e.do("GET", "/v1/whatsapp/qr.png", a.Token, nil), 200)
	// Paired: the persister stores the connected status.
	if _, err := e.db.Pool.Exec(t.Context(), `UPDATE mentorados SET wa_status = 'connected', wa_status_at = now() + interval '1 second' WHERE id = $1`, a.ID); err != nil {
		t.Fatal(err)
	}
	res = e.do("GET", "/v1/whatsapp/qr.png", a.Token, nil)
	if res.Status != http.StatusNotFound || res.errorCode(t) != codeNoQR {
		t.Fatalf("qr.png after connected: %d %s", res.Status, res.Body)
	}
	assertJSONError(t, "qr.png", res)
	sse := e.openSSE(bearerAuth(a.Token), "")
	e.publishMessage(a.ID, "after-pairing", "hello")
	testenv.Eventually(t, 5*time.Second, func() bool { return len(sse.Events()) >= 1 }, "first event")
	for _, ev := range sse.Events() {
		if ev.Event == "qr" {
			t.Fatalf("new stream got the stale QR: %+v", ev)
		}
	}
}

// FuzzRequestErrorsAreJSON sends arbitrary methods, paths and bodies with no,
// a wrong or a mentorado token: never a 5xx, never a redirect, and every
// error is the JSON shape.
func FuzzRequestErrorsAreJSON(f *testing.F) {
	e := newEnv(f, func(c *Config) { c.SendRate, c.StreamOpenRate = -1, -1 })
	a := e.createMentorado("Ana")
	e.fakeConnector(defaultAnswer)
	for _, s := range []struct {
		m    uint8
		path string
		tok  uint8
		body string
	}{
		{0, "/v1/conversations//messages", 2, ""},
		{1, "/v1/messages", 2, `{"phone":"5511988887777","text":"x"}`},
		{1, "/v1/admin/mentorados", 1, `{"name":"a\u0000"}`},
		{0, "/v1/ws", 2, ""},
		{2, "/v1/whatsapp/data", 0, ""},
		{3, "/../../etc/passwd", 2, ""},
		{0, "/assets/../openapi.json", 0, ""},
		{1, "/v1/stream-tickets/", 2, "{"},
	} {
		f.Add(s.m, s.path, s.tok, s.body)
	}
	methods := []string{"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"}
	f.Fuzz(func(t *testing.T, m uint8, path string, tok uint8, body string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(methods[int(m)%len(methods)], e.srv.URL+path, strings.NewReader(body))
		if err != nil || req.URL.Path == "" {
			return
		}
		if strings.IndexFunc(req.URL.RequestURI(), func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
			return // not a valid request line: net/http refuses it before any handler runs
		}
		switch tok % 3 {
		case 1:
			req.Header.Set("Authorization", "Bearer zbt_wrong")
		case 2:
			req.Header.Set("Authorization", "Bearer "+a.Token)
			if _, pat := e.s.mux.Handler(req); pat == "GET /v1/events" || pat == "GET /v1/ws" {
				return // a live stream opens; covered by the stream tests
			}
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		cl := *e.srv.Client()
		cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		cl.Timeout = 10 * time.Second
		res, err := cl.Do(req)
		if err != nil {
			t.Fatalf("%s %q: %v", req.Method, path, err)
		}
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<16))
		res.Body.Close()
		r := response{Status: res.StatusCode, Header: res.Header, Body: b}
		if r.Status >= 500 {
			t.Fatalf("%s %q: %d %s", req.Method, path, r.Status, b)
		}
		if req.Method == "HEAD" {
			return // no body to check
		}
		assertJSONError(t, req.Method+" "+path, r)
	})
}
