package media_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/testenv"
)

// newStore starts an embedded NATS server, creates the bucket as the
// provision step does and returns a store cutting files into chunkSize
// chunks, with its JetStream handle for inspection.
func newStore(t *testing.T, chunkSize int) (*media.ObjectStore, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(testenv.NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: media.Bucket, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	s, err := media.NewObjectStore(ctx, js, media.Bucket, media.WithChunkSize(chunkSize))
	if err != nil {
		t.Fatal(err)
	}
	return s, js
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func readAll(t *testing.T, s media.Store, m int64, id string) []byte {
	t.Helper()
	o, err := s.Open(context.Background(), m, id)
	if err != nil {
		t.Fatalf("open %d/%s: %v", m, id, err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("read %d/%s: %v", m, id, err)
	}
	return b
}

func streamBytes(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), media.StreamName(media.Bucket))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Bytes
}

func TestNewObjectStoreWithoutBucket(t *testing.T) {
	nc, err := nats.Connect(testenv.NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	_, err = media.NewObjectStore(context.Background(), js, media.Bucket)
	if !errors.Is(err, media.ErrNoBucket) || !strings.Contains(err.Error(), "zapbus-admin provision") {
		t.Fatalf("want ErrNoBucket naming the provision step, got %v", err)
	}
}

func TestPutStoresOncePerTenant(t *testing.T) {
	s, js := newStore(t, 1024)
	ctx := context.Background()
	data := randomBytes(t, 5000) // 5 chunks
	info, created, err := s.Put(ctx, 1, bytes.NewReader(data), "image/jpeg", 1<<20)
	if err != nil || !created {
		t.Fatalf("first put: created=%v err=%v", created, err)
	}
	if info.ID != sha(data) || info.Size != 5000 || info.MIME != "image/jpeg" || info.Created.IsZero() {
		t.Fatalf("info %+v", info)
	}
	after := streamBytes(t, js)

	again, created, err := s.Put(ctx, 1, bytes.NewReader(data), "application/octet-stream", 1<<20)
	if err != nil || created {
		t.Fatalf("second put: created=%v err=%v", created, err)
	}
	if again != info {
		t.Fatalf("second put returned %+v, want the stored %+v", again, info)
	}
	if got := streamBytes(t, js); got != after {
		t.Fatalf("second put of the same bytes grew the bucket from %d to %d bytes", after, got)
	}
	if got := readAll(t, s, 1, info.ID); !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, not the stored ones", len(got))
	}
	st, err := s.Stat(ctx, 1, info.ID)
	if err != nil || st != info {
		t.Fatalf("stat %+v %v, want %+v", st, err, info)
	}

	// Another tenant neither sees it nor shares it: its own put stores a copy.
	if _, err := s.Stat(ctx, 2, info.ID); !errors.Is(err, media.ErrNotFound) {
		t.Fatalf("tenant 2 stat of tenant 1's file: %v, want ErrNotFound", err)
	}
	if _, err := s.Open(ctx, 2, info.ID); !errors.Is(err, media.ErrNotFound) {
		t.Fatalf("tenant 2 open of tenant 1's file: %v, want ErrNotFound", err)
	}
	if _, created, err := s.Put(ctx, 2, bytes.NewReader(data), "image/jpeg", 1<<20); err != nil || !created {
		t.Fatalf("tenant 2 put: created=%v err=%v", created, err)
	}
	if _, err := s.Stat(ctx, 1, "not-an-id"); !errors.Is(err, media.ErrNotFound) {
		t.Fatalf("stat of a malformed id: %v", err)
	}
}

func TestPutConcurrentSameFile(t *testing.T) {
	s, js := newStore(t, 1024)
	data := randomBytes(t, 3000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	createdN := 0
	for range 6 {
		wg.Go(func() {
			_, created, err := s.Put(context.Background(), 7, bytes.NewReader(data), "audio/ogg", 1<<20)
			if err != nil {
				t.Error(err)
			}
			if created {
				mu.Lock()
				createdN++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if createdN != 1 {
		t.Fatalf("%d puts report created, want exactly 1", createdN)
	}
	if got := readAll(t, s, 7, sha(data)); !bytes.Equal(got, data) {
		t.Fatal("stored bytes differ")
	}
	// The losers' chunks were purged: what is left is one copy plus one description.
	if got := streamBytes(t, js); got > 3000+1500 {
		t.Fatalf("bucket holds %d bytes for one 3000-byte file", got)
	}
}

func TestPutTooLargeStoresNothing(t *testing.T) {
	s, js := newStore(t, 1024)
	ctx := context.Background()
	data := randomBytes(t, 4097)
	var read countingReader
	read.r = bytes.NewReader(append(data, randomBytes(t, 1<<20)...))
	_, _, err := s.Put(ctx, 1, &read, "video/mp4", 4096)
	if !errors.Is(err, media.ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
	if read.n > 4097+32*1024 {
		t.Fatalf("put read %d bytes of an oversize stream; it should stop soon after max+1", read.n)
	}
	if got := streamBytes(t, js); got != 0 {
		t.Fatalf("bucket holds %d bytes after a refused put", got)
	}
	if _, err := s.Stat(ctx, 1, sha(data)); !errors.Is(err, media.ErrNotFound) {
		t.Fatalf("stat after refused put: %v", err)
	}
	// Exactly max is fine.
	if _, created, err := s.Put(ctx, 1, bytes.NewReader(data[:4096]), "video/mp4", 4096); err != nil || !created {
		t.Fatalf("put of exactly max: %v %v", created, err)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// A file larger than the in-memory threshold goes through a temporary
// file, and its ~200 chunks through more than one window of asynchronous
// publishes.
func TestPutLargeFile(t *testing.T) {
	s, _ := newStore(t, 16*1024)
	data := randomBytes(t, 3<<20+17)
	info, created, err := s.Put(context.Background(), 3, bytes.NewReader(data), "application/pdf", 16<<20)
	if err != nil || !created || info.ID != sha(data) || info.Size != int64(len(data)) {
		t.Fatalf("put: %+v %v %v", info, created, err)
	}
	if got := readAll(t, s, 3, info.ID); !bytes.Equal(got, data) {
		t.Fatal("large file read back differs")
	}
}

func TestEmptyFile(t *testing.T) {
	s, _ := newStore(t, 100)
	info, created, err := s.Put(context.Background(), 1, bytes.NewReader(nil), "text/plain", 10)
	if err != nil || !created || info.Size != 0 || info.ID != sha(nil) {
		t.Fatalf("put empty: %+v %v %v", info, created, err)
	}
	if got := readAll(t, s, 1, info.ID); len(got) != 0 {
		t.Fatalf("read %d bytes of an empty file", len(got))
	}
}

func TestOpenSeek(t *testing.T) {
	s, _ := newStore(t, 100)
	data := randomBytes(t, 1050) // 11 chunks
	info, _, err := s.Put(context.Background(), 1, bytes.NewReader(data), "audio/ogg", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	o, err := s.Open(context.Background(), 1, info.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.Info() != info {
		t.Fatalf("object info %+v", o.Info())
	}
	read := func(at, n int64) {
		t.Helper()
		if _, err := o.Seek(at, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, n)
		if _, err := io.ReadFull(o, got); err != nil {
			t.Fatalf("read %d at %d: %v", n, at, err)
		}
		if !bytes.Equal(got, data[at:at+n]) {
			t.Fatalf("read %d at %d: wrong bytes", n, at)
		}
	}
	read(0, 10)
	read(555, 300) // forward, across chunks
	read(120, 50)  // backward, into a chunk already met
	read(999, 51)  // to the end
	read(0, 1050)
	if end, _ := o.Seek(0, io.SeekEnd); end != 1050 {
		t.Fatalf("seek end: %d", end)
	}
	if n, err := o.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read at end: %d %v", n, err)
	}
	if _, err := o.Seek(-1, io.SeekStart); err == nil {
		t.Fatal("seek before start accepted")
	}
}

func TestServeContentRange(t *testing.T) {
	s, _ := newStore(t, 1000)
	data := randomBytes(t, 10_500) // 11 chunks
	info, _, err := s.Put(context.Background(), 1, bytes.NewReader(data), "video/mp4", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o, err := s.Open(r.Context(), 1, info.ID)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		defer o.Close()
		w.Header().Set("Content-Type", o.Info().MIME)
		http.ServeContent(w, r, "", o.Info().Created, o)
	}))
	defer srv.Close()
	get := func(rng string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	resp, body := get("bytes=4321-6789")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[4321:6790]) {
		t.Fatalf("range: %d, %d bytes, equal=%v", resp.StatusCode, len(body), bytes.Equal(body, data[4321:6790]))
	}
	if got := resp.Header.Get("Content-Range"); got != "bytes 4321-6789/10500" {
		t.Fatalf("Content-Range %q", got)
	}
	resp, body = get("bytes=-100")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[10400:]) {
		t.Fatalf("suffix range: %d", resp.StatusCode)
	}
	resp, body = get("")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) || resp.Header.Get("Content-Type") != "video/mp4" {
		t.Fatalf("whole file: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestDelete(t *testing.T) {
	s, js := newStore(t, 1024)
	ctx := context.Background()
	var ids1 []string
	for i := range 3 {
		info, _, err := s.Put(ctx, 1, bytes.NewReader(randomBytes(t, 2000+i)), "image/png", 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		ids1 = append(ids1, info.ID)
	}
	keep := randomBytes(t, 1500)
	kept, _, err := s.Put(ctx, 2, bytes.NewReader(keep), "image/png", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	// Tenant 12 shares tenant 1's prefix digits: DeleteAll(1) must not touch it.
	other, _, err := s.Put(ctx, 12, bytes.NewReader(keep), "image/png", 1<<20)
	if err != nil {
		t.Fatal(err)
	}

	if err := s.Delete(ctx, 1, ids1[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, 1, ids1[0]); !errors.Is(err, media.ErrNotFound) {
		t.Fatalf("stat after delete: %v", err)
	}
	if err := s.Delete(ctx, 1, ids1[0]); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if err := s.Delete(ctx, 2, ids1[1]); err != nil {
		t.Fatalf("delete of a file the tenant does not have: %v", err)
	}
	if _, err := s.Stat(ctx, 1, ids1[1]); err != nil {
		t.Fatalf("tenant 2's delete removed tenant 1's file: %v", err)
	}

	if err := s.DeleteAll(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids1 {
		if _, err := s.Stat(ctx, 1, id); !errors.Is(err, media.ErrNotFound) {
			t.Fatalf("stat %s after DeleteAll: %v", id, err)
		}
	}
	if got := readAll(t, s, 2, kept.ID); !bytes.Equal(got, keep) {
		t.Fatal("tenant 2's file damaged by tenant 1's DeleteAll")
	}
	if _, err := s.Stat(ctx, 12, other.ID); err != nil {
		t.Fatalf("tenant 12's file after DeleteAll(1): %v", err)
	}
	// What is left is tenant 2's and 12's files (1500 bytes each plus descriptions).
	if got := streamBytes(t, js); got > 2*1500+2000 {
		t.Fatalf("bucket still holds %d bytes: tenant 1's chunks were not purged", got)
	}
	// A deleted file can be stored again.
	data := randomBytes(t, 10)
	info, _, _ := s.Put(ctx, 1, bytes.NewReader(data), "text/plain", 100)
	if err := s.Delete(ctx, 1, info.ID); err != nil {
		t.Fatal(err)
	}
	if _, created, err := s.Put(ctx, 1, bytes.NewReader(data), "text/plain", 100); err != nil || !created {
		t.Fatalf("put after delete: %v %v", created, err)
	}
	if got := readAll(t, s, 1, info.ID); !bytes.Equal(got, data) {
		t.Fatal("re-stored file differs")
	}
}

// The files are ordinary objects: the nats client's object store reads them.
func TestObjectsReadableByNATSClient(t *testing.T) {
	s, js := newStore(t, 1024)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	data := randomBytes(t, 4000)
	info, _, err := s.Put(ctx, 5, bytes.NewReader(data), "application/pdf", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(ctx, media.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	got, err := obs.GetBytes(ctx, media.ObjectName(5, info.ID))
	if err != nil {
		t.Fatalf("nats client get (checks our digest too): %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("nats client read different bytes")
	}
}
