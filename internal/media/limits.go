package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/zapbus/zapbus/internal/config"
	"github.com/zapbus/zapbus/internal/event"
)

// MiB is 1,048,576 bytes.
const MiB = 1 << 20

// Limits are the largest files zapbus stores, per message kind, in bytes:
// for files received (a larger one is not downloaded; its media event says
// failed) and files uploaded to be sent (refused with media_too_large).
//
// The defaults follow what WhatsApp itself accepts where that is a sane
// size for a CRM to keep (Meta documents 5 MB images, 16 MB audio and
// video, 100 MB documents and 500 KB animated stickers for the Cloud API;
// the phone apps send up to 2 GB as documents): images 16 MiB (phone
// photos sent "HD" can pass 5 MB), video 64 MiB (the apps compress video,
// but longer clips pass 16 MB), audio and voice notes 16 MiB, documents
// 100 MiB, stickers 512 KiB. Every file passes through the connector or
// notifier and lives in JetStream, so 2 GB is not a default: an operator
// who needs more raises ZAPBUS_MEDIA_MAX_<KIND> (docs/operations.md).
type Limits struct {
	Image    int64
	Video    int64
	Audio    int64
	PTT      int64
	Document int64
	Sticker  int64
}

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		Image:    16 * MiB,
		Video:    64 * MiB,
		Audio:    16 * MiB,
		PTT:      16 * MiB,
		Document: 100 * MiB,
		Sticker:  512 << 10,
	}
}

// LimitsFromEnv reads ZAPBUS_MEDIA_MAX_IMAGE, _VIDEO, _AUDIO, _PTT,
// _DOCUMENT and _STICKER (sizes such as 16MiB or 100MB, see
// config.Env.Bytes); unset ones keep the defaults. Bad values are
// reported by env.Err.
func LimitsFromEnv(env *config.Env) Limits {
	l := DefaultLimits()
	for _, k := range event.MediaKinds {
		p := l.field(k)
		*p = env.Bytes(EnvMax(k), *p)
	}
	return l
}

// EnvMax is the environment variable holding kind k's limit.
func EnvMax(k event.Kind) string { return "ZAPBUS_MEDIA_MAX_" + strings.ToUpper(string(k)) }

func (l *Limits) field(k event.Kind) *int64 {
	switch k {
	case event.KindImage:
		return &l.Image
	case event.KindVideo:
		return &l.Video
	case event.KindAudio:
		return &l.Audio
	case event.KindPTT:
		return &l.PTT
	case event.KindDocument:
		return &l.Document
	case event.KindSticker:
		return &l.Sticker
	}
	return nil
}

// For returns the limit for files of kind k: 0 for a kind that carries no
// file (nothing may be stored for it). A zero field takes the default.
func (l Limits) For(k event.Kind) int64 {
	p := l.field(k)
	if p == nil {
		return 0
	}
	if *p <= 0 {
		d := DefaultLimits()
		return *d.field(k)
	}
	return *p
}

// Max returns the largest limit of any kind: what an upload whose kind is
// not known yet may send at most.
func (l Limits) Max() int64 {
	var m int64
	for _, k := range event.MediaKinds {
		m = max(m, l.For(k))
	}
	return m
}

// ReadForSend reads the file a send names (mentorado m's id) and checks it
// fits the kind: an unknown id is media_not_found, a wrong type
// unsupported_media, a file over the kind's limit media_too_large — each
// an *event.CommandError, so nothing is sent on any of them. The
// connector and the provider gateway send files through it.
func ReadForSend(ctx context.Context, s Store, m int64, kind event.Kind, id string, limits Limits) (Info, []byte, error) {
	obj, err := s.Open(ctx, m, id)
	if errors.Is(err, ErrNotFound) {
		return Info{}, nil, event.NewCommandError(event.CodeMediaNotFound, "no file %s; upload it first (POST /v1/media)", id)
	}
	if err != nil {
		return Info{}, nil, fmt.Errorf("open media: %w", err)
	}
	defer obj.Close()
	info := obj.Info()
	if err := CheckKind(kind, info.MIME); err != nil {
		return Info{}, nil, event.NewCommandError(event.CodeMediaType, "%v", err)
	}
	limit := limits.For(kind)
	if info.Size > limit {
		return Info{}, nil, event.NewCommandError(event.CodeMediaTooLarge, "%d bytes is over the %s limit of %d", info.Size, kind, limit)
	}
	data, err := io.ReadAll(io.LimitReader(obj, limit+1))
	if err != nil {
		return Info{}, nil, fmt.Errorf("read media: %w", err)
	}
	if int64(len(data)) > limit {
		return Info{}, nil, event.NewCommandError(event.CodeMediaTooLarge, "file is over the %s limit of %d bytes", kind, limit)
	}
	return info, data, nil
}
