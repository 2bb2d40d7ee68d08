package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/zapbus/zapbus/internal/event"
)

// Bucket is the JetStream Object Store bucket holding zapbus's files; its
// stream is StreamName(Bucket) ("OBJ_WA_MEDIA").
const Bucket = "WA_MEDIA"

// StreamName is the stream behind an object store bucket.
func StreamName(bucket string) string { return "OBJ_" + bucket }

// DefaultChunkSize is the size of the stream messages a file is cut into
// (the object store's own default): well under the server's max_payload.
const DefaultChunkSize = 128 * 1024

// putWindow is how many chunks Put leaves unacknowledged at most.
const putWindow = 32

// memoryThreshold is how much of an incoming file Put buffers in memory
// before spilling it to a temporary file.
const memoryThreshold = 1 << 20

// ObjectStore is Store on a NATS JetStream Object Store bucket. Files are
// objects named "<mentorado>/<sha256 hex>", stored in the bucket's layout
// (chunks on $O.<bucket>.C.<nuid>, one description on
// $O.<bucket>.M.<base64url(name)>), so the nats CLI can list and read them.
//
// It talks to the bucket's stream with the fewest JetStream API calls a
// least-privilege NATS user needs (nats.conf): STREAM.INFO, DIRECT.GET
// (descriptions and chunks are read one message at a time, so reading a
// file creates no consumer), publishes on $O.<bucket>.> and STREAM.PURGE
// (Delete). Creating the bucket is the admin step's job (bus.Provision).
type ObjectStore struct {
	js        jetstream.JetStream
	stream    jetstream.Stream
	bucket    string
	chunkSize int
}

var _ Store = (*ObjectStore)(nil)

// Option tunes an ObjectStore.
type Option func(*ObjectStore)

// WithChunkSize sets the size of the chunks new files are cut into
// (DefaultChunkSize unless set; tests use small chunks).
func WithChunkSize(n int) Option {
	return func(s *ObjectStore) {
		if n > 0 {
			s.chunkSize = n
		}
	}
}

// ErrNoBucket matches the error NewObjectStore returns when the bucket's
// stream does not exist (run the provision step).
var ErrNoBucket = errors.New("media: object store bucket not provisioned")

// NewObjectStore binds to the provisioned object store bucket (Bucket in
// production) through js. It looks the bucket's stream up once
// (STREAM.INFO) and fails with ErrNoBucket when it does not exist.
func NewObjectStore(ctx context.Context, js jetstream.JetStream, bucket string, opts ...Option) (*ObjectStore, error) {
	st, err := js.Stream(ctx, StreamName(bucket))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: %s; run `zapbus-admin provision`", ErrNoBucket, StreamName(bucket))
	}
	if err != nil {
		return nil, fmt.Errorf("media: look up bucket %s: %w", bucket, err)
	}
	if !st.CachedInfo().Config.AllowDirect {
		return nil, fmt.Errorf("media: bucket %s does not allow direct gets; provision it as an object store", bucket)
	}
	s := &ObjectStore{js: js, stream: st, bucket: bucket, chunkSize: DefaultChunkSize}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// ObjectName is the object name of file id of mentorado m.
func ObjectName(m int64, id string) string { return strconv.FormatInt(m, 10) + "/" + id }

func (s *ObjectStore) metaSubject(name string) string {
	return "$O." + s.bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(name))
}

func (s *ObjectStore) chunkSubject(nuid string) string { return "$O." + s.bucket + ".C." + nuid }

// meta is a file's stored description: the message on its meta subject
// (absent when there is none, deleted when a tool left a delete marker).
type meta struct {
	info jetstream.ObjectInfo
	seq  uint64 // of the description message; 0 when absent
}

func (s *ObjectStore) loadMeta(ctx context.Context, name string) (meta, error) {
	msg, err := s.stream.GetLastMsgForSubject(ctx, s.metaSubject(name))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return meta{}, nil
	}
	if err != nil {
		return meta{}, fmt.Errorf("media: read %s: %w", name, err)
	}
	var md meta
	if err := json.Unmarshal(msg.Data, &md.info); err != nil {
		return meta{}, fmt.Errorf("media: read %s: bad description: %w", name, err)
	}
	md.info.ModTime = msg.Time
	md.seq = msg.Sequence
	return md, nil
}

func (md meta) exists() bool { return md.seq != 0 && !md.info.Deleted && md.info.NUID != "" }

func (md meta) toInfo(id string) Info {
	mime := md.info.Metadata["mime"]
	if mime == "" {
		mime = md.info.Headers.Get("Content-Type")
	}
	return Info{ID: id, Size: int64(md.info.Size), MIME: mime, Created: md.info.ModTime.UTC()}
}

// Put implements Store. It reads r (at most max+1 bytes) into memory or a
// temporary file while hashing it, refuses a file over max with
// ErrTooLarge, and stores the file only if mentorado m has no file of that
// id: the description is written with an expected-last-subject-sequence
// condition, so two concurrent Puts of one file store it once (the loser's
// chunks are purged and it returns the winner's Info with created false).
func (s *ObjectStore) Put(ctx context.Context, m int64, r io.Reader, mime string, max int64) (Info, bool, error) {
	if max <= 0 {
		return Info{}, false, fmt.Errorf("media: put: no size limit given")
	}
	buf, err := spool(io.LimitReader(r, max+1))
	if err != nil {
		return Info{}, false, fmt.Errorf("media: put: read: %w", err)
	}
	defer buf.close()
	if buf.size > max {
		return Info{}, false, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
	}
	id := hex.EncodeToString(buf.sum)
	name := ObjectName(m, id)
	for attempt := 0; ; attempt++ {
		md, err := s.loadMeta(ctx, name)
		if err != nil {
			return Info{}, false, err
		}
		if md.exists() {
			return md.toInfo(id), false, nil
		}
		info, err := s.store(ctx, name, buf, mime, md.seq)
		if errors.Is(err, errLostRace) && attempt < 3 {
			continue // someone stored (or deleted) it meanwhile: look again
		}
		if err != nil {
			return Info{}, false, err
		}
		return info.toInfo(id), true, nil
	}
}

var errLostRace = errors.New("media: description changed during put")

// store publishes buf's chunks under a new nuid and then the description,
// expecting the description subject's last sequence to be lastSeq.
func (s *ObjectStore) store(ctx context.Context, name string, buf *spooled, mime string, lastSeq uint64) (meta, error) {
	src, err := buf.reader()
	if err != nil {
		return meta{}, fmt.Errorf("media: put %s: %w", name, err)
	}
	id := nuid.Next()
	subj := s.chunkSubject(id)
	purge := func() {
		_ = s.stream.Purge(context.WithoutCancel(ctx), jetstream.WithPurgeSubject(subj))
	}
	// Chunks are published asynchronously, at most putWindow unacknowledged
	// at a time: fast, without holding a large file in memory.
	chunk := make([]byte, s.chunkSize)
	var pending []jetstream.PubAckFuture
	wait := func(f jetstream.PubAckFuture) error {
		select {
		case <-f.Ok():
			return nil
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	chunks := 0
	for {
		n, rerr := io.ReadFull(src, chunk)
		if n > 0 {
			if len(pending) == putWindow {
				if err := wait(pending[0]); err != nil {
					purge()
					return meta{}, fmt.Errorf("media: put %s: chunk: %w", name, err)
				}
				pending = pending[1:]
			}
			f, err := s.js.PublishMsgAsync(&nats.Msg{Subject: subj, Data: bytes.Clone(chunk[:n])})
			if err != nil {
				purge()
				return meta{}, fmt.Errorf("media: put %s: chunk: %w", name, err)
			}
			pending = append(pending, f)
			chunks++
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			purge()
			return meta{}, fmt.Errorf("media: put %s: %w", name, rerr)
		}
	}
	for _, f := range pending {
		if err := wait(f); err != nil {
			purge()
			return meta{}, fmt.Errorf("media: put %s: chunk: %w", name, err)
		}
	}
	md := meta{info: jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{
			Name:     name,
			Headers:  nats.Header{"Content-Type": []string{mime}},
			Metadata: map[string]string{"mime": mime},
			Opts:     &jetstream.ObjectMetaOptions{ChunkSize: uint32(s.chunkSize)},
		},
		Bucket: s.bucket,
		NUID:   id,
		Size:   uint64(buf.size),
		Chunks: uint32(chunks),
		Digest: "SHA-256=" + base64.URLEncoding.EncodeToString(buf.sum),
	}}
	data, err := json.Marshal(md.info)
	if err != nil {
		purge()
		return meta{}, err
	}
	msg := &nats.Msg{Subject: s.metaSubject(name), Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	ack, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(lastSeq))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		purge()
		return meta{}, errLostRace
	}
	if err != nil {
		purge()
		return meta{}, fmt.Errorf("media: put %s: description: %w", name, err)
	}
	// The server's time of the description is what Stat reports later.
	if stored, err := s.loadMeta(ctx, name); err == nil && stored.seq == ack.Sequence {
		return stored, nil
	}
	md.seq = ack.Sequence
	return md, nil
}

// Stat implements Store.
func (s *ObjectStore) Stat(ctx context.Context, m int64, id string) (Info, error) {
	md, err := s.stat(ctx, m, id)
	if err != nil {
		return Info{}, err
	}
	return md.toInfo(id), nil
}

func (s *ObjectStore) stat(ctx context.Context, m int64, id string) (meta, error) {
	if !event.IsMediaID(id) {
		return meta{}, ErrNotFound
	}
	md, err := s.loadMeta(ctx, ObjectName(m, id))
	if err != nil {
		return meta{}, err
	}
	if !md.exists() {
		return meta{}, ErrNotFound
	}
	return md, nil
}

// Open implements Store. The returned Object reads with ctx (a request's
// context: reads fail once it ends) and reads the file's chunks one
// direct get at a time. Seek only records the offset: a read after a
// forward seek skips the chunks before it, a read after a backward seek
// starts again from the chunk holding the offset (the chunks already met
// are remembered), so http.ServeContent's Range requests cost at most one
// pass over the chunks before the range.
func (s *ObjectStore) Open(ctx context.Context, m int64, id string) (Object, error) {
	md, err := s.stat(ctx, m, id)
	if err != nil {
		return nil, err
	}
	return &object{
		ctx:   ctx,
		s:     s,
		info:  md.toInfo(id),
		subj:  s.chunkSubject(md.info.NUID),
		size:  int64(md.info.Size),
		next:  1,
		marks: []chunkMark{},
	}, nil
}

// Delete implements Store. The description goes first, so the file is
// gone for readers at once; a crash before the chunks are purged leaves
// unreachable chunks, never a description without its bytes.
func (s *ObjectStore) Delete(ctx context.Context, m int64, id string) error {
	if !event.IsMediaID(id) {
		return nil
	}
	return s.deleteName(ctx, ObjectName(m, id))
}

func (s *ObjectStore) deleteName(ctx context.Context, name string) error {
	md, err := s.loadMeta(ctx, name)
	if err != nil {
		return err
	}
	if md.seq == 0 {
		return nil
	}
	if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(s.metaSubject(name))); err != nil {
		return fmt.Errorf("media: delete %s: %w", name, err)
	}
	if md.info.NUID == "" {
		return nil
	}
	if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(s.chunkSubject(md.info.NUID))); err != nil {
		return fmt.Errorf("media: delete %s: chunks: %w", name, err)
	}
	return nil
}

// DeleteAll implements Store: it lists the bucket's descriptions
// (STREAM.INFO with a subject filter) and deletes those of mentorado m.
func (s *ObjectStore) DeleteAll(ctx context.Context, m int64) error {
	names, err := s.names(ctx)
	if err != nil {
		return err
	}
	prefix := strconv.FormatInt(m, 10) + "/"
	for _, name := range names {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		if err := s.deleteName(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// names lists every object name in the bucket.
func (s *ObjectStore) names(ctx context.Context) ([]string, error) {
	pre := "$O." + s.bucket + ".M."
	info, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(pre+">"))
	if err != nil {
		return nil, fmt.Errorf("media: list %s: %w", s.bucket, err)
	}
	names := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		raw, err := base64.URLEncoding.DecodeString(strings.TrimPrefix(subj, pre))
		if err != nil {
			continue // not written by an object store client
		}
		names = append(names, string(raw))
	}
	return names, nil
}

// chunkMark is where a chunk met while reading starts.
type chunkMark struct {
	seq uint64 // stream sequence of the chunk
	off int64  // file offset of its first byte
}

// object is an open file of an ObjectStore.
type object struct {
	ctx  context.Context
	s    *ObjectStore
	info Info
	subj string
	size int64

	mu     sync.Mutex
	off    int64  // logical offset: where the next Read starts
	cur    int64  // file offset of buf[0]
	buf    []byte // rest of the current chunk
	next   uint64 // stream sequence to look for the next chunk from
	marks  []chunkMark
	closed bool
}

func (o *object) Info() Info { return o.info }

func (o *object) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed, o.buf = true, nil
	return nil
}

func (o *object) Seek(offset int64, whence int) (int64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = o.off + offset
	case io.SeekEnd:
		abs = o.size + offset
	default:
		return 0, errors.New("media: seek: bad whence")
	}
	if abs < 0 {
		return 0, errors.New("media: seek: negative position")
	}
	o.off = abs
	return abs, nil
}

func (o *object) Read(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0, os.ErrClosed
	}
	if o.off >= o.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if o.off < o.cur {
		o.rewind()
	}
	for o.off >= o.cur+int64(len(o.buf)) {
		o.cur += int64(len(o.buf))
		o.buf = nil
		if err := o.fetch(); err != nil {
			return 0, err
		}
	}
	skip := o.off - o.cur
	o.buf, o.cur = o.buf[skip:], o.off
	n := copy(p, o.buf)
	o.buf, o.cur, o.off = o.buf[n:], o.cur+int64(n), o.off+int64(n)
	return n, nil
}

// rewind moves the read position back to the last chunk met that starts
// at or before o.off.
func (o *object) rewind() {
	o.buf, o.cur, o.next = nil, 0, 1
	for i := len(o.marks) - 1; i >= 0; i-- {
		if o.marks[i].off <= o.off {
			o.cur, o.next = o.marks[i].off, o.marks[i].seq
			o.marks = o.marks[:i]
			return
		}
	}
	o.marks = o.marks[:0]
}

// fetch reads the next chunk (direct get of the first message on the
// chunk subject at or after o.next) into buf.
func (o *object) fetch() error {
	msg, err := o.s.stream.GetMsg(o.ctx, o.next, jetstream.WithGetMsgSubject(o.subj))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("media: read %s: chunk missing at offset %d (deleted while reading?): %w", o.info.ID, o.cur, io.ErrUnexpectedEOF)
	}
	if err != nil {
		return fmt.Errorf("media: read %s: %w", o.info.ID, err)
	}
	if len(msg.Data) == 0 {
		return fmt.Errorf("media: read %s: empty chunk at sequence %d", o.info.ID, msg.Sequence)
	}
	o.marks = append(o.marks, chunkMark{seq: msg.Sequence, off: o.cur})
	o.buf, o.next = msg.Data, msg.Sequence+1
	return nil
}

// spooled is a file read to its end: in memory when small, else in a
// temporary file; with its size and SHA-256.
type spooled struct {
	mem  []byte
	file *os.File
	size int64
	sum  []byte
}

func spool(r io.Reader) (*spooled, error) {
	h := sha256.New()
	var mem bytes.Buffer
	n, err := io.Copy(io.MultiWriter(&mem, h), io.LimitReader(r, memoryThreshold))
	if err != nil {
		return nil, err
	}
	sp := &spooled{mem: mem.Bytes(), size: n}
	if n < memoryThreshold {
		sp.sum = h.Sum(nil)
		return sp, nil
	}
	f, err := os.CreateTemp("", "zapbus-media-*")
	if err != nil {
		return nil, err
	}
	sp.file = f
	if _, err := f.Write(sp.mem); err != nil {
		sp.close()
		return nil, err
	}
	sp.mem = nil
	more, err := io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		sp.close()
		return nil, err
	}
	sp.size += more
	sp.sum = h.Sum(nil)
	return sp, nil
}

func (sp *spooled) reader() (io.Reader, error) {
	if sp.file == nil {
		return bytes.NewReader(sp.mem), nil
	}
	if _, err := sp.file.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return sp.file, nil
}

func (sp *spooled) close() {
	if sp.file != nil {
		name := sp.file.Name()
		_ = sp.file.Close()
		_ = os.Remove(name)
		sp.file = nil
	}
}
