// Package media is zapbus's file store: the bytes of media messages,
// received (downloaded and decrypted by the connector) or uploaded by a
// mentorado to be sent. Files are content-addressed per mentorado: a file's
// id is the lowercase hex SHA-256 of its bytes, so the same file forwarded
// many times, or downloaded again on a replay, is stored once per tenant.
//
// Store is the small interface the connector and the notifier use; the
// implementation in this package keeps files in a NATS JetStream Object
// Store bucket (WA_MEDIA), so no new infrastructure is needed. An
// S3-compatible store can replace it behind the same interface
// (docs/decisions/0011-media.md).
package media

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned for a file the mentorado's store does not hold.
var ErrNotFound = errors.New("media: not found")

// ErrTooLarge is returned by Put when the file exceeds the given limit.
var ErrTooLarge = errors.New("media: file too large")

// Info describes a stored file.
type Info struct {
	ID      string    // sha256 hex of the bytes
	Size    int64     // bytes
	MIME    string    // content type, as detected or declared at Put
	Created time.Time // when first stored
}

// Object is an open stored file: readable and seekable (http.ServeContent
// serves Range requests from it). Close releases it.
type Object interface {
	io.ReadSeekCloser
	Info() Info
}

// Store holds files per mentorado.
type Store interface {
	// Put reads r to the end and stores it for mentorado m under its
	// SHA-256, with content type mime. At most max bytes are accepted
	// (ErrTooLarge beyond; nothing is stored). Storing a file the
	// mentorado already has is a no-op that returns the existing Info
	// (created reports whether this call stored it).
	Put(ctx context.Context, m int64, r io.Reader, mime string, max int64) (info Info, created bool, err error)
	// Stat describes a stored file (ErrNotFound when absent).
	Stat(ctx context.Context, m int64, id string) (Info, error)
	// Open opens a stored file (ErrNotFound when absent).
	Open(ctx context.Context, m int64, id string) (Object, error)
	// Delete removes a file (no error when absent).
	Delete(ctx context.Context, m int64, id string) error
	// DeleteAll removes every file of mentorado m (tenant deletion).
	DeleteAll(ctx context.Context, m int64) error
}
