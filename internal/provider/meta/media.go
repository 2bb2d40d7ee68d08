package meta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// mediaInfo is GET /{media-id}. file_size is a string in Meta's examples
// and a number in some SDKs; both are read.
type mediaInfo struct {
	URL      string          `json:"url"`
	MIMEType string          `json:"mime_type"`
	SHA256   string          `json:"sha256"`
	FileSize json.RawMessage `json:"file_size"`
	ID       string          `json:"id"`
}

func (m *mediaInfo) size() int64 {
	s := strings.Trim(string(m.FileSize), `" `)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// FetchMedia downloads a received file: GET /{media-id} for its
// short-lived URL, then GET that URL with the bearer token. Files over
// max are refused (media_too_large) before and while downloading; the
// bytes are checked against Meta's sha256 (base64 in Meta's payloads; hex
// accepted too).
func (d *Driver) FetchMedia(ctx context.Context, acc provider.Account, ref provider.MediaRef, max int64) ([]byte, string, error) {
	c, err := creds(acc)
	if err != nil {
		return nil, "", err
	}
	if ref.ProviderID == "" {
		return nil, "", event.NewCommandError(event.CodeBadRequest, "meta media reference without a media id")
	}
	var info mediaInfo
	if err := d.getJSON(ctx, c, d.base+"/"+pathEscape(ref.ProviderID), &info); err != nil {
		return nil, "", err
	}
	if info.URL == "" {
		return nil, "", event.NewCommandError(event.CodeProviderError, "meta gave no download URL for media %s", ref.ProviderID)
	}
	if n := info.size(); max > 0 && n > max {
		return nil, "", event.NewCommandError(event.CodeMediaTooLarge, "media %s is %d bytes, over the %d allowed", ref.ProviderID, n, max)
	}
	limit := max
	if limit <= 0 {
		limit = 100 << 20
	}
	data, ctype, err := d.do(ctx, c, call{method: http.MethodGet, url: info.URL, max: limit})
	if err != nil {
		var tl *tooLarge
		if errors.As(err, &tl) {
			return nil, "", event.NewCommandError(event.CodeMediaTooLarge, "media %s is over the %d bytes allowed", ref.ProviderID, limit)
		}
		return nil, "", err
	}
	if want, ok := decodeSHA256(info.SHA256); ok {
		got := sha256.Sum256(data)
		if !bytes.Equal(want, got[:]) {
			return nil, "", event.NewCommandError(event.CodeProviderError, "media %s: the download does not match Meta's sha256", ref.ProviderID)
		}
	}
	mimeType := firstNonEmpty(info.MIMEType, ref.MIME, ctype, "application/octet-stream")
	return data, mimeType, nil
}

// decodeSHA256 reads a SHA-256 given as 64 hex digits or as base64
// (standard or URL alphabet, padded or not); false when s is neither.
func decodeSHA256(s string) ([]byte, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, false
	}
	if len(s) == 64 {
		if b, err := hex.DecodeString(s); err == nil {
			return b, true
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == sha256.Size {
			return b, true
		}
	}
	return nil, false
}
