package zapifake

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/zapbus/zapbus/internal/provider"
)

//go:embed templates/*.json
var templates embed.FS

// TB is what New needs of a test (testing.TB has it): the server closes
// at Cleanup and logs through Logf. nil means no logs; call Close.
type TB interface {
	Cleanup(func())
	Logf(format string, args ...any)
}

// Server is a fake Z-API.
type Server struct {
	tb  TB
	srv *httptest.Server

	mu         sync.Mutex
	instances  map[string]*Instance
	failN      int
	failStatus int
	outage     bool
	attempts   map[string]int
	total      int
	sent       []Sent
	media      map[string]mediaFile
	deliveries []Delivery
}

// Sent is a send the fake accepted.
type Sent struct {
	Instance  string         // instance id
	Endpoint  string         // e.g. "send-text", "send-document/pdf", "send-reaction"
	Phone     string         // the body's phone
	Body      map[string]any // the decoded JSON body
	MessageID string         // the messageId answered
	// MIME and Data are the decoded data URI of a file send.
	MIME string
	Data []byte
}

// Delivery is a webhook body posted by Deliver.
type Delivery struct {
	URL    string
	Body   []byte
	Status int
}

type mediaFile struct {
	mime string
	data []byte
}

// New starts a fake Z-API.
func New(tb TB) *Server {
	s := &Server{tb: tb, instances: map[string]*Instance{}, attempts: map[string]int{}, media: map[string]mediaFile{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/instances/{id}/token/{token}/{endpoint...}", s.rest)
	mux.HandleFunc("GET /media/{name}", s.serveMedia)
	s.srv = httptest.NewServer(mux)
	if tb != nil {
		tb.Cleanup(s.Close)
	}
	return s
}

// URL is the fake's base URL (zapi.Config.BaseURL).
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

func (s *Server) logf(format string, args ...any) {
	if s.tb != nil {
		s.tb.Logf("zapifake: "+format, args...)
	}
}

// InstanceConfig configures AddInstance. Empty strings get random values;
// Phone defaults to 5511988887777.
type InstanceConfig struct {
	ID, Token, ClientToken string
	Phone                  string // the number the instance is (or will be) paired with
	Connected              bool
}

// Instance is a Z-API instance of the fake.
type Instance struct {
	s           *Server
	ID          string
	Token       string
	ClientToken string
	Phone       string
	connected   bool
	qr          string
	webhook     string
	sentByMe    bool
}

// Webhook is the URL set with update-every-webhooks ("" before) and
// whether notifySentByMe was on.
func (in *Instance) Webhook() (url string, notifySentByMe bool) {
	in.s.mu.Lock()
	defer in.s.mu.Unlock()
	return in.webhook, in.sentByMe
}

// AddInstance registers an instance.
func (s *Server) AddInstance(cfg InstanceConfig) *Instance {
	in := &Instance{s: s, ID: cfg.ID, Token: cfg.Token, ClientToken: cfg.ClientToken, Phone: cfg.Phone, connected: cfg.Connected}
	if in.ID == "" {
		in.ID = strings.ToUpper(randHex(16))
	}
	if in.Token == "" {
		in.Token = strings.ToUpper(randHex(12))
	}
	if in.ClientToken == "" {
		in.ClientToken = "F" + randHex(16)
	}
	if in.Phone == "" {
		in.Phone = "5511988887777"
	}
	if !in.connected {
		in.qr = newQR()
	}
	s.mu.Lock()
	s.instances[in.ID] = in
	s.mu.Unlock()
	return in
}

// Credentials are the instance's credentials as zapbus stores them, with
// webhookSecret.
func (in *Instance) Credentials(webhookSecret string) *provider.ZAPICredentials {
	return &provider.ZAPICredentials{InstanceID: in.ID, InstanceToken: in.Token, ClientToken: in.ClientToken, WebhookSecret: webhookSecret}
}

// IsConnected reports whether the instance is paired.
func (in *Instance) IsConnected() bool {
	in.s.mu.Lock()
	defer in.s.mu.Unlock()
	return in.connected
}

// QR is the code the instance shows while not connected ("" when
// connected).
func (in *Instance) QR() string {
	in.s.mu.Lock()
	defer in.s.mu.Unlock()
	return in.qr
}

// Scan simulates the phone scanning the QR code: the instance is
// connected. Deliver Connected() to tell zapbus, as Z-API would.
func (in *Instance) Scan() {
	in.s.mu.Lock()
	defer in.s.mu.Unlock()
	in.connected, in.qr = true, ""
}

// Unpair disconnects the instance (as the phone removing the device
// would) and makes a new QR code.
func (in *Instance) Unpair() {
	in.s.mu.Lock()
	defer in.s.mu.Unlock()
	in.connected, in.qr = false, newQR()
}

// FailNext answers the next n REST calls with status (and a JSON error).
func (s *Server) FailNext(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failStatus = n, status
}

// Outage makes every REST call fail at the connection (a broken
// answer, then the connection closes) while on.
func (s *Server) Outage(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outage = on
}

// Attempts counts the REST calls to endpoint (e.g. "send-text",
// "status"; "send-document/pdf" counts as itself), failed ones included.
func (s *Server) Attempts(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[endpoint]
}

// TotalAttempts counts every REST call.
func (s *Server) TotalAttempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Sent lists the accepted sends, oldest first.
func (s *Server) Sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sent(nil), s.sent...)
}

// AddMedia serves data at a URL of the fake (like Z-API's storage) and
// returns the URL.
func (s *Server) AddMedia(name, mime string, data []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.media[name] = mediaFile{mime: mime, data: append([]byte(nil), data...)}
	return s.srv.URL + "/media/" + name
}

func (s *Server) serveMedia(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	f, ok := s.media[r.PathValue("name")]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", f.mime)
	_, _ = w.Write(f.data)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func zerr(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

var notConnected = "You are not connected."

// rest serves /instances/{id}/token/{token}/{endpoint...}.
func (s *Server) rest(w http.ResponseWriter, r *http.Request) {
	endpoint := r.PathValue("endpoint")
	s.mu.Lock()
	s.attempts[endpoint]++
	s.total++
	outage := s.outage
	fail := 0
	if s.failN > 0 {
		s.failN--
		fail = s.failStatus
	}
	in, ok := s.instances[r.PathValue("id")]
	s.mu.Unlock()
	switch {
	case outage:
		if hj, ok := w.(http.Hijacker); ok {
			// A broken answer, not a bare close: Go's transport retries
			// an idempotent request by itself when a reused connection
			// closes before any byte, which would blur attempt counts.
			if c, _, err := hj.Hijack(); err == nil {
				_, _ = c.Write([]byte("OUTAGE\r\n\r\n"))
				_ = c.Close()
				return
			}
		}
		zerr(w, http.StatusServiceUnavailable, "outage")
		return
	case fail != 0:
		zerr(w, fail, fmt.Sprintf("simulated failure %d", fail))
		return
	case !ok || in.Token != r.PathValue("token"):
		zerr(w, http.StatusNotFound, "Instance not found")
		return
	}
	if ct := r.Header.Get("Client-Token"); ct != in.ClientToken {
		if ct == "" {
			ct = "null"
		}
		zerr(w, http.StatusBadRequest, ct+" not allowed")
		return
	}
	s.mu.Lock()
	connected, qr, phone := in.connected, in.qr, in.Phone
	s.mu.Unlock()

	get := func() bool {
		if r.Method != http.MethodGet {
			zerr(w, http.StatusMethodNotAllowed, "method not allowed")
			return false
		}
		return true
	}
	switch {
	case endpoint == "status":
		if !get() {
			return
		}
		if connected {
			writeJSON(w, 200, map[string]any{"connected": true, "error": "You are already connected.", "smartphoneConnected": true})
		} else {
			writeJSON(w, 200, map[string]any{"connected": false, "error": notConnected, "smartphoneConnected": false})
		}
	case endpoint == "device":
		if !get() {
			return
		}
		if !connected {
			zerr(w, http.StatusBadRequest, notConnected)
			return
		}
		writeJSON(w, 200, map[string]any{"phone": phone, "name": "Mentor", "device": map[string]string{"sessionName": "Z-API", "device_model": "Z-API"}, "isBusiness": false})
	case endpoint == "qr-code":
		if !get() {
			return
		}
		if connected {
			writeJSON(w, 200, map[string]any{"connected": true})
			return
		}
		writeJSON(w, 200, map[string]any{"value": qr})
	case strings.HasPrefix(endpoint, "phone-code/"):
		if !get() {
			return
		}
		if connected {
			writeJSON(w, 200, map[string]any{"connected": true})
			return
		}
		writeJSON(w, 200, map[string]any{"value": strings.ToUpper(randHex(4))})
	case endpoint == "disconnect":
		if !get() {
			return
		}
		in.Unpair()
		writeJSON(w, 200, map[string]any{"value": true})
	case endpoint == "messages" && r.Method == http.MethodDelete:
		if !connected {
			zerr(w, http.StatusBadRequest, notConnected)
			return
		}
		q := r.URL.Query()
		if q.Get("messageId") == "" || q.Get("phone") == "" || q.Get("owner") == "" {
			zerr(w, http.StatusBadRequest, "messageId, phone and owner are required")
			return
		}
		s.record(Sent{Instance: in.ID, Endpoint: endpoint, Phone: q.Get("phone"), Body: map[string]any{"messageId": q.Get("messageId"), "owner": q.Get("owner")}})
		w.WriteHeader(http.StatusNoContent)
	case endpoint == "update-every-webhooks" && r.Method == http.MethodPut:
		var body struct {
			Value          string `json:"value"`
			NotifySentByMe bool   `json:"notifySentByMe"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Value == "" {
			zerr(w, http.StatusBadRequest, "value is required")
			return
		}
		s.mu.Lock()
		in.webhook, in.sentByMe = body.Value, body.NotifySentByMe
		s.mu.Unlock()
		writeJSON(w, 200, map[string]any{"value": true})
	case r.Method == http.MethodPost:
		s.post(w, r, in, endpoint, connected)
	default:
		zerr(w, http.StatusNotFound, "NOT_FOUND")
	}
}

// fileField is the body field of each file send.
var fileField = map[string]string{"send-image": "image", "send-video": "video", "send-audio": "audio", "send-sticker": "sticker", "send-document": "document"}

func (s *Server) post(w http.ResponseWriter, r *http.Request, in *Instance, endpoint string, connected bool) {
	base, _, _ := strings.Cut(endpoint, "/")
	var body map[string]any
	if err := json.NewDecoder(io.LimitReader(r.Body, 200<<20)).Decode(&body); err != nil {
		zerr(w, http.StatusBadRequest, "invalid JSON body")
		return
	}
	str := func(k string) string { v, _ := body[k].(string); return v }
	phone := str("phone")
	if phone == "" {
		zerr(w, http.StatusBadRequest, "phone is required")
		return
	}
	rec := Sent{Instance: in.ID, Endpoint: endpoint, Phone: phone, Body: body}
	switch base {
	case "send-text":
		if str("message") == "" {
			zerr(w, http.StatusBadRequest, "message is required")
			return
		}
	case "send-reaction":
		if str("reaction") == "" || str("messageId") == "" {
			zerr(w, http.StatusBadRequest, "reaction and messageId are required")
			return
		}
	case "send-remove-reaction", "read-message":
		if str("messageId") == "" {
			zerr(w, http.StatusBadRequest, "messageId is required")
			return
		}
	case "send-image", "send-video", "send-audio", "send-sticker", "send-document":
		if base == "send-document" && !strings.Contains(endpoint, "/") {
			zerr(w, http.StatusBadRequest, "send-document needs /{extension}")
			return
		}
		mime, data, err := dataURI(str(fileField[base]))
		if err != nil {
			zerr(w, http.StatusBadRequest, fileField[base]+": "+err.Error())
			return
		}
		rec.MIME, rec.Data = mime, data
		delete(body, fileField[base]) // keep records small
	default:
		zerr(w, http.StatusNotFound, "NOT_FOUND")
		return
	}
	if !connected {
		zerr(w, http.StatusBadRequest, notConnected)
		return
	}
	if base == "read-message" {
		s.record(rec)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rec.MessageID = newMessageID()
	s.record(rec)
	s.logf("%s %s accepted as %s", in.ID, endpoint, rec.MessageID)
	writeJSON(w, 200, map[string]string{"zaapId": strings.ToUpper(randHex(16)), "messageId": rec.MessageID, "id": rec.MessageID})
}

func (s *Server) record(rec Sent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, rec)
}

// dataURI decodes "data:<mime>;base64,<data>".
func dataURI(v string) (string, []byte, error) {
	rest, ok := strings.CutPrefix(v, "data:")
	if !ok {
		return "", nil, fmt.Errorf("want a data URI (URLs are not fetched by the fake)")
	}
	meta, b64, ok := strings.Cut(rest, ",")
	mime, isB64 := strings.CutSuffix(meta, ";base64")
	if !ok || !isB64 || mime == "" {
		return "", nil, fmt.Errorf("want data:<mime>;base64,<data>")
	}
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(data) == 0 {
		return "", nil, fmt.Errorf("bad base64")
	}
	return mime, data, nil
}

// Webhook side.

// template returns the named template as a map.
func template(name string) map[string]any {
	b, err := templates.ReadFile("templates/" + name)
	if err != nil {
		panic(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	return m
}

func encode(m map[string]any) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func nowMillis() int64 { return time.Now().UnixMilli() }

// received fills the common fields of a ReceivedCallback template.
func (in *Instance) received(tpl, from, name string) (string, map[string]any) {
	m := template(tpl)
	id := newMessageID()
	m["instanceId"], m["messageId"], m["phone"], m["momment"] = in.ID, id, from, nowMillis()
	m["connectedPhone"], m["fromMe"], m["isGroup"] = in.Phone, false, false
	m["senderName"], m["chatName"] = name, name
	delete(m, "senderLid")
	return id, m
}

// ReceivedText is the ReceivedCallback of a text message from phone from
// (E.164 digits) whose sender calls themself name.
func (in *Instance) ReceivedText(from, name, text string) (messageID string, body []byte) {
	id, m := in.received("received_text.json", from, name)
	m["text"] = map[string]any{"message": text}
	return id, encode(m)
}

// ReceivedImage is the ReceivedCallback of an image from phone from: a
// small PNG served by the fake at the body's image.imageUrl (read it
// back with Server.Media).
func (in *Instance) ReceivedImage(from, caption string) (messageID string, body []byte) {
	id, m := in.received("received_image.json", from, "")
	delete(m, "senderName")
	u := in.s.AddMedia(id+".png", "image/png", samplePNG(id))
	img := m["image"].(map[string]any)
	img["imageUrl"], img["thumbnailUrl"], img["mimeType"], img["caption"] = u, u, "image/png", caption
	return id, encode(m)
}

// Media returns the file the fake serves at url.
func (s *Server) Media(url string) ([]byte, bool) {
	name, ok := strings.CutPrefix(url, s.srv.URL+"/media/")
	if !ok {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.media[name]
	return f.data, ok
}

// Status is a MessageStatusCallback: status is SENT, RECEIVED, READ,
// READ_BY_ME or PLAYED for messages ids of the chat with phone to.
func (in *Instance) Status(to string, ids []string, status string) []byte {
	m := template("status.json")
	m["instanceId"], m["ids"], m["status"], m["phone"], m["momment"] = in.ID, ids, status, to, nowMillis()
	return encode(m)
}

// Connected is the ConnectedCallback Z-API posts once the number is
// paired (after Scan).
func (in *Instance) Connected() []byte {
	m := template("connected.json")
	m["instanceId"], m["phone"], m["momment"] = in.ID, in.Phone, nowMillis()
	return encode(m)
}

// Disconnected is the DisconnectedCallback Z-API posts when the number
// drops.
func (in *Instance) Disconnected() []byte {
	m := template("disconnected.json")
	m["instanceId"], m["momment"] = in.ID, nowMillis()
	return encode(m)
}

// Deliver posts body to url as Z-API posts webhooks, records it and
// returns the HTTP status.
func (s *Server) Deliver(ctx context.Context, url string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "zapifake")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	s.mu.Lock()
	s.deliveries = append(s.deliveries, Delivery{URL: url, Body: append([]byte(nil), body...), Status: resp.StatusCode})
	s.mu.Unlock()
	return resp.StatusCode, nil
}

// Deliveries lists what Deliver posted, oldest first.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.deliveries...)
}

// Redeliver posts the i-th delivery again, byte for byte, as Z-API does
// when a delivery was not answered 200.
func (s *Server) Redeliver(ctx context.Context, i int) (int, error) {
	s.mu.Lock()
	if i < 0 || i >= len(s.deliveries) {
		s.mu.Unlock()
		return 0, fmt.Errorf("zapifake: no delivery %d", i)
	}
	d := s.deliveries[i]
	s.mu.Unlock()
	return s.Deliver(ctx, d.URL, d.Body)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newMessageID looks like a WhatsApp Web message id.
func newMessageID() string { return "3EB0" + strings.ToUpper(randHex(8)) }

// newQR looks like the string a WhatsApp Web QR code encodes.
func newQR() string {
	return "2@" + base64.StdEncoding.EncodeToString([]byte(randHex(24))) + "," + base64.StdEncoding.EncodeToString([]byte(randHex(16))) + "," + base64.StdEncoding.EncodeToString([]byte(randHex(16)))
}

// samplePNG is a small PNG that differs per seed.
func samplePNG(seed string) []byte {
	img := image.NewGray(image.Rect(0, 0, 4, 4))
	copy(img.Pix, seed)
	var b bytes.Buffer
	_ = png.Encode(&b, img)
	return b.Bytes()
}
