package wafake

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waMmsRetry"
	"go.mau.fi/whatsmeow/util/gcmutil"
	"go.mau.fi/whatsmeow/util/hkdfutil"
)

func mediaRetryKey(mediaKey []byte) []byte {
	return hkdfutil.SHA256(mediaKey, nil, []byte("WhatsApp Media Retry Notification"), 32)
}

// answerMediaRetry plays the sending phone after a client's media retry
// receipt (<receipt type="server-error"><encrypt><enc_p/><enc_iv/></encrypt>
// <rmr jid from_me/>): it decrypts the request with the attachment's media
// key, re-uploads the same encrypted file to a new direct path and sends
// <notification type="mediaretry"> with the encrypted
// MediaRetryNotification (SUCCESS and the new path). A phone that does not
// have the file (unknown message, ForgetMedia) answers <error code="2"/>.
func (s *Server) answerMediaRetry(c *conn, n *waBinary.Node, id string) {
	rmr, ok := n.GetOptionalChildByTag("rmr")
	encP, _ := n.GetChildByTag("encrypt", "enc_p").Content.([]byte)
	encIV, _ := n.GetChildByTag("encrypt", "enc_iv").Content.([]byte)
	s.mu.Lock()
	s.mediaRetries++
	s.notifyLocked()
	a := c.acct
	m := s.media[id]
	var own any
	if a != nil {
		own = a.pnDeviceLocked().ToNonAD()
	}
	s.mu.Unlock()
	if a == nil || !ok {
		return
	}
	rmrAttrs := waBinary.Attrs{}
	for k, v := range rmr.Attrs {
		rmrAttrs[k] = v
	}
	notif := waBinary.Node{Tag: "notification", Attrs: waBinary.Attrs{
		"from": own, "id": id, "type": "mediaretry", "t": fmt.Sprint(time.Now().Unix()),
	}}
	s.mu.Lock()
	lost := m == nil || m.lost || (m.acct != a && !s.isMemberLocked(m.group, a))
	s.mu.Unlock()
	if lost {
		notif.Content = []waBinary.Node{
			{Tag: "rmr", Attrs: rmrAttrs},
			{Tag: "error", Attrs: waBinary.Attrs{"code": "2"}},
		}
		s.queueStanza(a, notif)
		return
	}
	result := &waMmsRetry.MediaRetryNotification{StanzaID: &id}
	if err := checkMediaRetryRequest(m.mediaKey, id, encP, encIV); err != nil {
		s.log.Warn().Err(err).Str("id", id).Msg("media retry request does not decrypt")
		result.Result = waMmsRetry.MediaRetryNotification_DECRYPTION_ERROR.Enum()
	} else {
		s.mu.Lock()
		nb := s.storeBlobLocked(m.blob.data, m.blob.mmsType)
		nb.msgID = id
		m.blob = nb
		result.DirectPath = &nb.directURL
		s.mu.Unlock()
		result.Result = waMmsRetry.MediaRetryNotification_SUCCESS.Enum()
	}
	plain, err := proto.Marshal(result)
	if err != nil {
		return
	}
	iv := randomBytes(12)
	ct, err := gcmutil.Encrypt(mediaRetryKey(m.mediaKey), iv, plain, []byte(id))
	if err != nil {
		s.log.Warn().Err(err).Msg("encrypt media retry notification")
		return
	}
	notif.Content = []waBinary.Node{
		{Tag: "rmr", Attrs: rmrAttrs},
		{Tag: "encrypt", Content: []waBinary.Node{
			{Tag: "enc_p", Content: ct},
			{Tag: "enc_iv", Content: iv},
		}},
	}
	s.queueStanza(a, notif)
}

func checkMediaRetryRequest(mediaKey []byte, id string, encP, encIV []byte) error {
	if len(encP) == 0 || len(encIV) == 0 {
		return errors.New("no encrypted payload")
	}
	plain, err := gcmutil.Decrypt(mediaRetryKey(mediaKey), encIV, encP, []byte(id))
	if err != nil {
		return err
	}
	var req waMmsRetry.ServerErrorReceipt
	if err = proto.Unmarshal(plain, &req); err != nil {
		return err
	}
	if req.GetStanzaID() != id {
		return fmt.Errorf("request for %q in receipt %q", req.GetStanzaID(), id)
	}
	return nil
}
