package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"

	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/wafake"
	"github.com/zapbus/zapbus/internal/web"
)

// simMaxUpload caps a multipart inbound request (the file and its fields).
// A JSON one is capped like every API body (-max-body-bytes), base64 and
// all; larger files go as multipart.
const simMaxUpload = 100 << 20

// inboundRequest is the body of POST /v1/dev/sim/{mentorado}/inbound: a
// contact sends the mentorado a text (kind text, the default) or a file
// (kind image, video, ptv, audio, ptt, document or sticker, with data).
type inboundRequest struct {
	Phone     string `json:"phone"`
	PushName  string `json:"push_name"`
	Kind      string `json:"kind"`
	Text      string `json:"text"`
	Data      []byte `json:"data"` // the file, base64 in JSON; the part "file" in multipart
	MIME      string `json:"mime"` // default: the kind's usual type
	Caption   string `json:"caption"`
	FileName  string `json:"file_name"`
	Seconds   uint32 `json:"seconds"`
	Width     uint32 `json:"width"`
	Height    uint32 `json:"height"`
	Thumbnail []byte `json:"thumbnail"` // inline JPEG preview, base64; the part "thumbnail" in multipart
	ReplyTo   string `json:"reply_to"`  // quote this message id
	// Group: the contact writes in this group (a JID POST …/groups
	// returned) instead of the direct chat.
	Group string `json:"group"`
	// LIDOnly true: the contact hides its number (its messages carry only
	// its LID, like a WhatsApp user the account knows only by LID); false
	// again: the next message reveals it. Absent: unchanged.
	LIDOnly *bool `json:"lid_only"`
}

var simMediaKinds = []string{
	wafake.MediaKindImage, wafake.MediaKindVideo, wafake.MediaKindPTV, wafake.MediaKindAudio,
	wafake.MediaKindPTT, wafake.MediaKindDocument, wafake.MediaKindSticker,
}

// readInbound reads an inbound request as JSON (by the API's rules) or as
// multipart/form-data (fields by the same names, the file in part "file").
func (s *simulator) readInbound(w http.ResponseWriter, r *http.Request, req *inboundRequest) bool {
	ct := r.Header.Get("Content-Type")
	if !strings.HasPrefix(ct, "multipart/form-data") {
		return s.web.ReadJSON(w, r, req)
	}
	r.Body = http.MaxBytesReader(w, r.Body, simMaxUpload)
	if err := r.ParseMultipartForm(8 << 20); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			web.WriteError(w, http.StatusRequestEntityTooLarge, "too_large", "multipart body larger than "+strconv.Itoa(simMaxUpload)+" bytes")
			return false
		}
		web.WriteError(w, http.StatusBadRequest, "bad_request", "bad multipart body: "+err.Error())
		return false
	}
	defer r.MultipartForm.RemoveAll()
	f := r.MultipartForm
	val := func(name string) string {
		if v := f.Value[name]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	for name := range f.Value {
		switch name {
		case "phone", "push_name", "kind", "text", "mime", "caption", "file_name", "seconds", "width", "height", "reply_to", "group", "lid_only":
		default:
			web.WriteError(w, http.StatusBadRequest, "bad_request", "unknown field "+strconv.Quote(name))
			return false
		}
	}
	for name := range f.File {
		if name != "file" && name != "thumbnail" {
			web.WriteError(w, http.StatusBadRequest, "bad_request", "unknown file part "+strconv.Quote(name)+"; want file or thumbnail")
			return false
		}
	}
	*req = inboundRequest{
		Phone: val("phone"), PushName: val("push_name"), Kind: val("kind"), Text: val("text"), MIME: val("mime"),
		Caption: val("caption"), FileName: val("file_name"), ReplyTo: val("reply_to"), Group: val("group"),
	}
	if v := val("lid_only"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			web.WriteError(w, http.StatusBadRequest, "bad_request", "lid_only must be true or false")
			return false
		}
		req.LIDOnly = &b
	}
	for name, dst := range map[string]*uint32{"seconds": &req.Seconds, "width": &req.Width, "height": &req.Height} {
		if v := val(name); v != "" {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				web.WriteError(w, http.StatusBadRequest, "bad_request", name+" must be a non-negative integer")
				return false
			}
			*dst = uint32(n)
		}
	}
	read := func(fh []*multipart.FileHeader) ([]byte, error) {
		if len(fh) == 0 {
			return nil, nil
		}
		file, err := fh[0].Open()
		if err != nil {
			return nil, err
		}
		defer file.Close()
		return io.ReadAll(file)
	}
	var err error
	if req.Data, err = read(f.File["file"]); err == nil {
		req.Thumbnail, err = read(f.File["thumbnail"])
	}
	if err != nil {
		web.WriteError(w, http.StatusBadRequest, "bad_request", "reading the file: "+err.Error())
		return false
	}
	if req.FileName == "" && len(f.File["file"]) > 0 && req.Kind == wafake.MediaKindDocument {
		req.FileName = f.File["file"][0].Filename
	}
	return true
}

// inbound: a contact sends the mentorado a text or a file (inboundRequest).
// The answer has the message id and, for a file, the sha256 of its bytes.
func (s *simulator) inbound(w http.ResponseWriter, r *http.Request, m int64) {
	var req inboundRequest
	if !s.readInbound(w, r, &req) {
		return
	}
	kind := req.Kind
	if kind == "" {
		kind = "text"
	}
	isMedia := false
	for _, k := range simMediaKinds {
		isMedia = isMedia || k == kind
	}
	switch {
	case kind == "text" && req.Text == "":
		web.WriteError(w, http.StatusBadRequest, "bad_request", "text is required")
		return
	case kind == "text" && (len(req.Data) > 0 || req.Caption != "" || req.FileName != ""):
		web.WriteError(w, http.StatusBadRequest, "bad_request", "data, caption and file_name are for media kinds")
		return
	case kind != "text" && !isMedia:
		web.WriteError(w, http.StatusBadRequest, "bad_request", "kind must be text or one of "+strings.Join(simMediaKinds, ", "))
		return
	case isMedia && len(req.Data) == 0:
		web.WriteError(w, http.StatusBadRequest, "bad_request", "data (the file) is required for kind "+kind)
		return
	case isMedia && req.Text != "":
		web.WriteError(w, http.StatusBadRequest, "bad_request", "a file has no text; use caption")
		return
	case req.Group != "" && req.ReplyTo != "":
		web.WriteError(w, http.StatusBadRequest, "bad_request", "reply_to is for direct chats in the simulator")
		return
	}
	// A mentorado on Meta or Z-API: that provider's fake delivers it.
	if sa, handled := s.simAccountOf(w, r, m); handled {
		if sa != nil {
			s.providerInbound(w, r, sa, req)
		}
		return
	}
	var group types.JID
	if req.Group != "" {
		var ok bool
		if group, ok = groupJID(w, req.Group); !ok {
			return
		}
	}
	c, acct, ok := s.contactOf(w, r, m, req.Phone)
	if !ok {
		return
	}
	if req.PushName != "" {
		c.SetPushName(req.PushName)
	}
	if req.LIDOnly != nil {
		c.SetLIDOnly(*req.LIDOnly)
	}
	var id string
	var err error
	switch {
	case !group.IsEmpty() && isMedia:
		id, err = c.SendGroupMedia(r.Context(), group, kind, req.Data, wafake.MediaOptions{
			MIME: req.MIME, Caption: req.Caption, FileName: req.FileName, Seconds: req.Seconds,
			Width: req.Width, Height: req.Height, Thumbnail: req.Thumbnail,
		})
	case !group.IsEmpty():
		id, err = c.SendGroupText(r.Context(), group, req.Text)
	case isMedia:
		id, err = c.SendMedia(r.Context(), acct, kind, req.Data, wafake.MediaOptions{
			MIME: req.MIME, Caption: req.Caption, FileName: req.FileName, Seconds: req.Seconds,
			Width: req.Width, Height: req.Height, Thumbnail: req.Thumbnail, ReplyTo: req.ReplyTo,
		})
	case req.ReplyTo != "":
		id, err = c.SendReply(r.Context(), acct, req.Text, req.ReplyTo)
	default:
		id, err = c.SendText(r.Context(), acct, req.Text)
	}
	if errors.Is(err, wafake.ErrUnknownMediaKind) {
		web.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if err != nil {
		web.WriteError(w, http.StatusConflict, "send_failed", err.Error())
		return
	}
	out := map[string]any{"id": id, "lid": c.LID().String()}
	if isMedia {
		sum := sha256.Sum256(req.Data)
		out["sha256"] = hex.EncodeToString(sum[:])
		out["size"] = len(req.Data)
	}
	web.WriteJSON(w, http.StatusAccepted, out)
}

// react: {"phone","target","emoji"} — the contact reacts to a message of
// the chat (its own or the mentorado's); "" removes its reaction.
func (s *simulator) react(w http.ResponseWriter, r *http.Request, m int64) {
	var req struct {
		Phone  string `json:"phone"`
		Target string `json:"target"`
		Emoji  string `json:"emoji"`
	}
	if !s.web.ReadJSON(w, r, &req) {
		return
	}
	s.act(w, r, m, req.Phone, req.Target, func(c *wafake.Contact, acct string) (string, error) {
		return c.SendReaction(r.Context(), acct, req.Target, req.Emoji)
	})
}

// edit: {"phone","target","text"} — the contact edits one of its messages.
func (s *simulator) edit(w http.ResponseWriter, r *http.Request, m int64) {
	var req struct {
		Phone  string `json:"phone"`
		Target string `json:"target"`
		Text   string `json:"text"`
	}
	if !s.web.ReadJSON(w, r, &req) {
		return
	}
	if req.Text == "" {
		web.WriteError(w, http.StatusBadRequest, "bad_request", "text is required")
		return
	}
	s.act(w, r, m, req.Phone, req.Target, func(c *wafake.Contact, acct string) (string, error) {
		return c.SendEdit(r.Context(), acct, req.Target, req.Text)
	})
}

// revoke: {"phone","target"} — the contact deletes one of its messages for
// everyone.
func (s *simulator) revoke(w http.ResponseWriter, r *http.Request, m int64) {
	var req struct {
		Phone  string `json:"phone"`
		Target string `json:"target"`
	}
	if !s.web.ReadJSON(w, r, &req) {
		return
	}
	s.act(w, r, m, req.Phone, req.Target, func(c *wafake.Contact, acct string) (string, error) {
		return c.SendRevoke(r.Context(), acct, req.Target)
	})
}

func (s *simulator) act(w http.ResponseWriter, r *http.Request, m int64, number, target string, do func(*wafake.Contact, string) (string, error)) {
	if target == "" {
		web.WriteError(w, http.StatusBadRequest, "bad_request", "target (a message id) is required")
		return
	}
	c, acct, ok := s.contactOf(w, r, m, number)
	if !ok {
		return
	}
	id, err := do(c, acct)
	if err != nil {
		web.WriteError(w, http.StatusConflict, "send_failed", err.Error())
		return
	}
	web.WriteJSON(w, http.StatusAccepted, map[string]string{"id": id})
}

// simReceived is a message the mentorado sent to a simulated contact, as
// the contact's phone decrypted it.
type simReceived struct {
	ID          string    `json:"id"`
	From        string    `json:"from"` // the account's phone
	Kind        string    `json:"kind"` // text, image, video, ptv, audio, ptt, document, sticker, reaction, edit, revoke, other
	Text        string    `json:"text,omitempty"`
	FileName    string    `json:"file_name,omitempty"`
	MIME        string    `json:"mime,omitempty"`
	MediaSize   int       `json:"media_size,omitempty"`
	MediaSHA256 string    `json:"media_sha256,omitempty"` // of the decrypted bytes
	MediaError  string    `json:"media_error,omitempty"`  // the contact could not fetch or decrypt the file
	ReplyTo     string    `json:"reply_to,omitempty"`     // the quoted message id
	Target      string    `json:"target,omitempty"`       // reaction, edit, revoke: the message it acts on
	Emoji       string    `json:"emoji,omitempty"`        // reaction ("" with kind reaction: removed)
	At          time.Time `json:"at"`
	Data        string    `json:"data,omitempty"` // the file, base64, with ?data=true
}

// received: GET ?phone=…[&data=true] — what the mentorado sent to that
// contact, oldest first, with the sha256 of each file the contact got.
func (s *simulator) received(w http.ResponseWriter, r *http.Request, m int64) {
	number, err := phone.Normalize(r.URL.Query().Get("phone"))
	if err != nil {
		web.WriteError(w, http.StatusBadRequest, "invalid_phone", err.Error())
		return
	}
	withData := r.URL.Query().Get("data") == "true"
	if sa, handled := s.simAccountOf(w, r, m); handled {
		if sa != nil {
			s.providerReceived(w, sa, number)
		}
		return
	}
	acct, _ := s.accountPhone(r.Context(), m)
	out := []simReceived{}
	for _, rc := range s.fake.Contact(number).Messages() {
		if acct != "" && rc.From != acct {
			continue // another mentorado's message to the same person
		}
		e := describeReceived(rc.Message)
		e.ID, e.From, e.At = rc.ID, rc.From, rc.Timestamp
		if e.Text == "" {
			e.Text = rc.Text
		}
		if rc.Media != nil {
			sum := sha256.Sum256(rc.Media)
			e.MediaSHA256 = hex.EncodeToString(sum[:])
			e.MediaSize = len(rc.Media)
			if withData {
				e.Data = base64.StdEncoding.EncodeToString(rc.Media)
			}
		}
		if rc.MediaErr != nil {
			e.MediaError = rc.MediaErr.Error()
		}
		out = append(out, e)
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"messages": out})
}

// describeReceived names a message's kind and the fields a test checks.
func describeReceived(msg *waE2E.Message) simReceived {
	var e simReceived
	if msg == nil {
		e.Kind = "other"
		return e
	}
	if dsm := msg.GetDeviceSentMessage(); dsm != nil && dsm.GetMessage() != nil {
		msg = dsm.GetMessage()
	}
	if em := msg.GetEditedMessage().GetMessage(); em != nil {
		msg = em
	}
	var ci *waE2E.ContextInfo
	switch {
	case msg.GetConversation() != "":
		e.Kind, e.Text = "text", msg.GetConversation()
	case msg.GetExtendedTextMessage() != nil:
		x := msg.GetExtendedTextMessage()
		e.Kind, e.Text, ci = "text", x.GetText(), x.GetContextInfo()
	case msg.GetImageMessage() != nil:
		x := msg.GetImageMessage()
		e.Kind, e.Text, e.MIME, ci = "image", x.GetCaption(), x.GetMimetype(), x.GetContextInfo()
	case msg.GetPtvMessage() != nil:
		x := msg.GetPtvMessage()
		e.Kind, e.MIME, ci = "ptv", x.GetMimetype(), x.GetContextInfo()
	case msg.GetVideoMessage() != nil:
		x := msg.GetVideoMessage()
		e.Kind, e.Text, e.MIME, ci = "video", x.GetCaption(), x.GetMimetype(), x.GetContextInfo()
	case msg.GetAudioMessage() != nil:
		x := msg.GetAudioMessage()
		e.Kind, e.MIME, ci = "audio", x.GetMimetype(), x.GetContextInfo()
		if x.GetPTT() {
			e.Kind = "ptt"
		}
	case msg.GetDocumentMessage() != nil:
		x := msg.GetDocumentMessage()
		e.Kind, e.Text, e.MIME, e.FileName, ci = "document", x.GetCaption(), x.GetMimetype(), x.GetFileName(), x.GetContextInfo()
	case msg.GetDocumentWithCaptionMessage().GetMessage().GetDocumentMessage() != nil:
		x := msg.GetDocumentWithCaptionMessage().GetMessage().GetDocumentMessage()
		e.Kind, e.Text, e.MIME, e.FileName, ci = "document", x.GetCaption(), x.GetMimetype(), x.GetFileName(), x.GetContextInfo()
	case msg.GetStickerMessage() != nil:
		x := msg.GetStickerMessage()
		e.Kind, e.MIME, ci = "sticker", x.GetMimetype(), x.GetContextInfo()
	case msg.GetReactionMessage() != nil:
		x := msg.GetReactionMessage()
		e.Kind, e.Target, e.Emoji = "reaction", x.GetKey().GetID(), x.GetText()
	case msg.GetProtocolMessage() != nil:
		x := msg.GetProtocolMessage()
		switch x.GetType() {
		case waE2E.ProtocolMessage_REVOKE:
			e.Kind, e.Target = "revoke", x.GetKey().GetID()
		case waE2E.ProtocolMessage_MESSAGE_EDIT:
			e.Kind, e.Target = "edit", x.GetKey().GetID()
			nm := x.GetEditedMessage()
			e.Text = nm.GetConversation()
			if e.Text == "" {
				e.Text = nm.GetExtendedTextMessage().GetText()
			}
		default:
			e.Kind = "other"
		}
	default:
		e.Kind = "other"
	}
	e.ReplyTo = ci.GetStanzaID()
	return e
}
