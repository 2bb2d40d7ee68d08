package metafake

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Version is the Graph API version in URL().
const Version = "v21.0"

// Logger is what New needs of a *testing.T (or any logger): Logf. When it
// also has Cleanup (a testing.TB), the server is closed at cleanup.
type Logger interface {
	Logf(format string, args ...any)
}

// Account is one business phone number the fake serves.
type Account struct {
	PhoneNumberID string // Meta's phone number id, e.g. "106540352242922"
	DisplayPhone  string // digits, e.g. "15550783881"
	WABAID        string // default "102290129340398"
	VerifiedName  string // default "Zapbus Test"
	Token         string // the access token requests must carry
}

// Request is one request the fake received.
type Request struct {
	Method, Path, Query string
	// Authorized is whether the bearer token matched (the token itself is
	// not recorded).
	Authorized  bool
	ContentType string
	Body        []byte // up to 1 MiB; uploads' file bytes are in Uploaded
}

// SentMessage is one message the Messages API accepted.
type SentMessage struct {
	PhoneNumberID string
	WAID          string // the wamid the fake answered
	To            string
	Type          string         // text, image, template, reaction, …
	Body          map[string]any // the request, decoded
}

// File is an uploaded or served media file.
type File struct {
	ID   string
	MIME string
	Data []byte
}

type failure struct {
	status     int
	body       string
	retryAfter string
}

// Server is the fake Graph API.
type Server struct {
	log Logger
	srv *httptest.Server

	mu       sync.Mutex
	accounts map[string]*Number // by phone number id
	media    map[string]*File   // by media id (uploaded and served)
	requests []Request
	sent     []SentMessage
	fails    []failure
	outage   bool
	attempts int
	seq      int
	now      func() time.Time
}

// New starts a fake on a loopback port.
func New(l Logger) *Server {
	s := &Server{log: l, accounts: map[string]*Number{}, media: map[string]*File{}, now: time.Now}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	if c, ok := l.(interface{ Cleanup(func()) }); ok {
		c.Cleanup(s.Close)
	}
	return s
}

// URL is the Graph API base with its version, for meta.Config.BaseURL.
func (s *Server) URL() string { return s.srv.URL + "/" + Version }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// SetNow sets the clock of the webhook builders' timestamps (default
// time.Now).
func (s *Server) SetNow(now func() time.Time) {
	s.mu.Lock()
	s.now = now
	s.mu.Unlock()
}

// AddAccount serves a (another) business number and returns its webhook
// builders.
func (s *Server) AddAccount(a Account) *Number {
	if a.WABAID == "" {
		a.WABAID = "102290129340398"
	}
	if a.VerifiedName == "" {
		a.VerifiedName = "Zapbus Test"
	}
	n := &Number{s: s, acc: a}
	s.mu.Lock()
	s.accounts[a.PhoneNumberID] = n
	s.mu.Unlock()
	return n
}

// FailNext answers the next n requests with status and body.
func (s *Server) FailNext(n, status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.fails = append(s.fails, failure{status: status, body: body})
	}
}

// RateLimit answers the next n requests 429 with Graph code 130429 and
// Retry-After: 1.
func (s *Server) RateLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.fails = append(s.fails, failure{status: http.StatusTooManyRequests, retryAfter: "1",
			body: ErrorBody(130429, "(#130429) Rate limit hit", "Cloud API message throughput has been reached.")})
	}
}

// Outage makes every request fail with 503 while on.
func (s *Server) Outage(on bool) {
	s.mu.Lock()
	s.outage = on
	s.mu.Unlock()
}

// Attempts counts the requests received, failed ones included.
func (s *Server) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// Requests returns every request received, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Sent returns every message the Messages API accepted, in order (read
// marks included, with Type "read").
func (s *Server) Sent() []SentMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SentMessage(nil), s.sent...)
}

// Uploaded returns the file uploaded (or served) under media id.
func (s *Server) Uploaded(id string) (File, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.media[id]
	if !ok {
		return File{}, false
	}
	return *f, true
}

// ServeMedia registers a file for GET /{media-id} and returns its id, as
// for a file a user sent.
func (s *Server) ServeMedia(mimeType string, data []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storeLocked(mimeType, data)
}

func (s *Server) storeLocked(mimeType string, data []byte) string {
	s.seq++
	id := strconv.Itoa(1003383421380000 + s.seq)
	s.media[id] = &File{ID: id, MIME: mimeType, Data: append([]byte(nil), data...)}
	return id
}

// ErrorBody is a Graph API error answer.
func ErrorBody(code int, message, details string) string {
	e := map[string]any{"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AfakeTraceId123"}
	if details != "" {
		e["error_data"] = map[string]any{"messaging_product": "whatsapp", "details": details}
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	return string(b)
}

func (s *Server) logf(format string, args ...any) {
	if s.log != nil {
		s.log.Logf("metafake: "+format, args...)
	}
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	s.mu.Lock()
	s.attempts++
	rec := Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, ContentType: r.Header.Get("Content-Type")}
	if len(body) <= 1<<20 {
		rec.Body = body
	}
	var fail *failure
	switch {
	case s.outage:
		fail = &failure{status: http.StatusServiceUnavailable, body: ErrorBody(2, "Service temporarily unavailable", "")}
	case len(s.fails) > 0:
		f := s.fails[0]
		s.fails = s.fails[1:]
		fail = &f
	}
	// Which account does the request name? /{pnid}/… or a media id.
	path := strings.TrimPrefix(r.URL.Path, "/")
	path = strings.TrimPrefix(path, Version+"/")
	parts := strings.Split(path, "/")
	var num *Number
	var file *File
	switch {
	case parts[0] == "download" && len(parts) == 2:
		file = s.media[parts[1]]
	default:
		num = s.accounts[parts[0]]
		if num == nil {
			file = s.media[parts[0]]
		}
	}
	auth := r.Header.Get("Authorization")
	rec.Authorized = s.authorizedLocked(auth, num)
	s.requests = append(s.requests, rec)
	s.mu.Unlock()

	if fail != nil {
		s.logf("%s %s: injected failure %d", r.Method, r.URL.Path, fail.status)
		if fail.retryAfter != "" {
			w.Header().Set("Retry-After", fail.retryAfter)
		}
		writeJSON(w, fail.status, fail.body)
		return
	}
	if !rec.Authorized {
		s.logf("%s %s: bearer token missing or wrong", r.Method, r.URL.Path)
		writeJSON(w, http.StatusUnauthorized, ErrorBody(190, "Invalid OAuth access token - Cannot parse access token", ""))
		return
	}
	switch {
	case file != nil && len(parts) == 2 && r.Method == http.MethodGet: // download
		w.Header().Set("Content-Type", file.MIME)
		_, _ = w.Write(file.Data)
	case file != nil && len(parts) == 1 && r.Method == http.MethodGet: // media info
		sum := sha256.Sum256(file.Data)
		b, _ := json.Marshal(map[string]any{"messaging_product": "whatsapp", "url": s.srv.URL + "/download/" + file.ID,
			"mime_type": file.MIME, "sha256": base64.StdEncoding.EncodeToString(sum[:]), "file_size": strconv.Itoa(len(file.Data)), "id": file.ID})
		writeJSON(w, http.StatusOK, string(b))
	case num != nil && len(parts) == 1 && r.Method == http.MethodGet:
		b, _ := json.Marshal(map[string]any{"verified_name": num.acc.VerifiedName, "display_phone_number": "+" + num.acc.DisplayPhone,
			"quality_rating": "GREEN", "id": num.acc.PhoneNumberID})
		writeJSON(w, http.StatusOK, string(b))
	case num != nil && len(parts) == 2 && parts[1] == "messages" && r.Method == http.MethodPost:
		s.messages(w, num, body)
	case num != nil && len(parts) == 2 && parts[1] == "media" && r.Method == http.MethodPost:
		s.upload(w, r, body)
	default:
		writeJSON(w, http.StatusBadRequest, ErrorBody(100, "Unsupported request - method type: "+strings.ToLower(r.Method), ""))
	}
}

// authorizedLocked checks the bearer: the account's token for a number's
// endpoints; any account's token for media (Meta checks the media belongs
// to the app; the fake keeps it simple).
func (s *Server) authorizedLocked(auth string, num *Number) bool {
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || tok == "" {
		return false
	}
	eq := func(a string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(tok)) == 1 }
	if num != nil {
		return eq(num.acc.Token)
	}
	for _, n := range s.accounts {
		if eq(n.acc.Token) {
			return true
		}
	}
	return false
}

var mediaTypes = map[string]bool{"image": true, "video": true, "audio": true, "document": true, "sticker": true}

func (s *Server) messages(w http.ResponseWriter, num *Number, body []byte) {
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorBody(100, "(#100) Invalid parameter", "request body is not JSON"))
		return
	}
	str := func(k string) string { v, _ := req[k].(string); return v }
	if str("messaging_product") != "whatsapp" {
		writeJSON(w, http.StatusBadRequest, ErrorBody(100, "(#100) The parameter messaging_product is required.", ""))
		return
	}
	if str("status") == "read" {
		if str("message_id") == "" {
			writeJSON(w, http.StatusBadRequest, ErrorBody(100, "(#100) The parameter message_id is required.", ""))
			return
		}
		s.mu.Lock()
		s.sent = append(s.sent, SentMessage{PhoneNumberID: num.acc.PhoneNumberID, Type: "read", Body: req})
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, `{"success":true}`)
		return
	}
	to, typ := str("to"), str("type")
	if to == "" || strings.Trim(to, "0123456789") != "" {
		writeJSON(w, http.StatusBadRequest, ErrorBody(100, "(#100) Invalid parameter", "to must be a phone number"))
		return
	}
	obj, _ := req[typ].(map[string]any)
	switch {
	case typ == "text" && obj != nil && obj["body"] != "":
	case typ == "template" && obj != nil && obj["name"] != nil:
	case typ == "reaction" && obj != nil && obj["message_id"] != nil:
	case mediaTypes[typ] && obj != nil:
		id, _ := obj["id"].(string)
		s.mu.Lock()
		_, ok := s.media[id]
		s.mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusBadRequest, ErrorBody(131053, "(#131053) Media upload error", "media id "+id+" was not uploaded"))
			return
		}
	default:
		writeJSON(w, http.StatusBadRequest, ErrorBody(100, "(#100) Invalid parameter", "unsupported or incomplete message of type "+typ))
		return
	}
	s.mu.Lock()
	s.seq++
	wamid := WAMID(to, fmt.Sprintf("OUT%012d", s.seq))
	s.sent = append(s.sent, SentMessage{PhoneNumberID: num.acc.PhoneNumberID, WAID: wamid, To: to, Type: typ, Body: req})
	s.mu.Unlock()
	b, _ := json.Marshal(map[string]any{"messaging_product": "whatsapp",
		"contacts": []map[string]string{{"input": to, "wa_id": to}},
		"messages": []map[string]string{{"id": wamid, "message_status": "accepted"}}})
	writeJSON(w, http.StatusOK, string(b))
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request, body []byte) {
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		writeJSON(w, http.StatusBadRequest, ErrorBody(100, "(#100) Invalid parameter", "upload must be multipart/form-data"))
		return
	}
	mr := multipart.NewReader(strings.NewReader(string(body)), params["boundary"])
	form, err := mr.ReadForm(64 << 20)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorBody(100, "(#100) Invalid parameter", "unreadable multipart body"))
		return
	}
	defer func() { _ = form.RemoveAll() }()
	get := func(k string) string {
		if v := form.Value[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	files := form.File["file"]
	if get("messaging_product") != "whatsapp" || get("type") == "" || len(files) != 1 {
		writeJSON(w, http.StatusBadRequest, ErrorBody(100, "(#100) Invalid parameter", "upload needs messaging_product=whatsapp, type and one file"))
		return
	}
	f, err := files[0].Open()
	if err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorBody(100, "(#100) Invalid parameter", "unreadable file part"))
		return
	}
	data, _ := io.ReadAll(f)
	_ = f.Close()
	s.mu.Lock()
	id := s.storeLocked(get("type"), data)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, `{"id":"`+id+`"}`)
}

// WAMID is a wamid in Meta's form for a chat with phone and a key.
func WAMID(phone, key string) string {
	raw := []byte{0x18, byte(len(phone))}
	raw = append(raw, phone...)
	raw = append(raw, 0x15, 0x02, 0x00, 0x12, 0x18, byte(len(key)))
	raw = append(raw, key...)
	raw = append(raw, 0x00)
	return "wamid.HB" + base64.StdEncoding.EncodeToString(raw)
}
