package stage

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LeaseRecord is one change of the WA_LEASES bucket as the watcher saw it,
// with the server's timestamp.
type LeaseRecord struct {
	Key      string
	Op       string // put, delete, purge
	Owner    string // the connector instance id (puts)
	Revision uint64
	At       time.Time
}

// LeaseHistory watches WA_LEASES for the whole run and keeps every change:
// the bucket itself keeps one revision per key, so the history has to be
// recorded as it happens. When the watch goes quiet for longer than renewals
// allow (a NATS restart can end it), it is started again from the next
// revision, so nothing in between is missed.
type LeaseHistory struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	records  []LeaseRecord
	restarts int
}

// WatchLeases starts recording with the admin user (nats.conf lets it
// create the consumer; its inbox is _INBOX_admin). quiet is how long
// without a change means the watch is stuck (renewals come every TTL/3
// while any session is owned).
func (s *Stack) WatchLeases(ctx context.Context) (*LeaseHistory, error) {
	nc, err := nats.Connect(s.AdminNATSURL(), nats.CustomInboxPrefix("_INBOX_admin"), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("lease history: connect: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	kv, err := js.KeyValue(ctx, "WA_LEASES")
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("lease history: bucket: %w", err)
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h := &LeaseHistory{nc: nc, cancel: cancel, done: make(chan struct{})}
	go h.run(wctx, kv, 2*s.cfg.LeaseTTL)
	return h, nil
}

func (h *LeaseHistory) run(ctx context.Context, kv jetstream.KeyValue, quiet time.Duration) {
	defer close(h.done)
	var last uint64
	for ctx.Err() == nil {
		opts := []jetstream.WatchOpt{jetstream.IncludeHistory()}
		if last > 0 {
			opts = []jetstream.WatchOpt{jetstream.ResumeFromRevision(last + 1)}
		}
		w, err := kv.WatchAll(ctx, opts...)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		timer := time.NewTimer(quiet)
	read:
		for {
			select {
			case <-ctx.Done():
				break read
			case <-timer.C:
				break read // quiet too long: start over from the next revision
			case e, ok := <-w.Updates():
				if !ok {
					break read
				}
				if e == nil {
					continue
				}
				timer.Reset(quiet)
				if e.Revision() <= last {
					continue
				}
				last = e.Revision()
				r := LeaseRecord{Key: e.Key(), Revision: e.Revision(), At: e.Created()}
				switch e.Operation() {
				case jetstream.KeyValuePut:
					r.Op, r.Owner = "put", string(e.Value())
				case jetstream.KeyValueDelete:
					r.Op = "delete"
				default:
					r.Op = "purge"
				}
				h.mu.Lock()
				h.records = append(h.records, r)
				h.mu.Unlock()
			}
		}
		timer.Stop()
		_ = w.Stop()
		h.mu.Lock()
		h.restarts++
		h.mu.Unlock()
	}
}

// Restarts is how many times the watch was started again.
func (h *LeaseHistory) Restarts() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.restarts
}

// Close stops watching.
func (h *LeaseHistory) Close() {
	h.cancel()
	<-h.done
	h.nc.Close()
}

// Records returns the history so far, in revision order.
func (h *LeaseHistory) Records() []LeaseRecord {
	h.mu.Lock()
	out := append([]LeaseRecord(nil), h.records...)
	h.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Revision < out[j].Revision })
	return out
}

// Owners is the current owner of each session, from the history.
func (h *LeaseHistory) Owners() map[string]string {
	out := map[string]string{}
	for _, r := range h.Records() {
		if r.Op == "put" {
			out[r.Key] = r.Owner
		} else {
			delete(out, r.Key)
		}
	}
	return out
}

// Overlap is a lease taken by one connector while another's was still
// live: the previous owner renewed it less than a TTL before and had not
// released it.
type Overlap struct {
	Key            string
	From, To       string
	LastRenew, Got time.Time
}

// Overlaps checks the history: a session's lease may change owner only
// after it was deleted (released, or expired: the server's TTL marker) or
// after a full TTL without renewal.
func Overlaps(records []LeaseRecord, ttl time.Duration) []Overlap {
	type holder struct {
		owner string
		renew time.Time
	}
	cur := map[string]holder{}
	var out []Overlap
	for _, r := range records {
		h := cur[r.Key]
		switch r.Op {
		case "put":
			if h.owner != "" && h.owner != r.Owner && r.At.Sub(h.renew) < ttl {
				out = append(out, Overlap{Key: r.Key, From: h.owner, To: r.Owner, LastRenew: h.renew, Got: r.At})
			}
			cur[r.Key] = holder{owner: r.Owner, renew: r.At}
		default:
			delete(cur, r.Key)
		}
	}
	return out
}

// Takeover is how long after at each session that owner held moved to
// another owner (the first put by someone else); missing sessions never
// moved.
func Takeover(records []LeaseRecord, owner string, at time.Time) (moved map[string]time.Duration, missing []string) {
	held := map[string]bool{}
	moved = map[string]time.Duration{}
	for _, r := range records {
		if r.At.After(at) {
			continue
		}
		if r.Op == "put" {
			held[r.Key] = r.Owner == owner
		} else {
			held[r.Key] = false
		}
	}
	for _, r := range records {
		if !held[r.Key] || r.Op != "put" || !r.At.After(at) || r.Owner == owner {
			continue
		}
		if _, ok := moved[r.Key]; !ok {
			moved[r.Key] = r.At.Sub(at)
		}
	}
	for k, h := range held {
		if _, ok := moved[k]; h && !ok {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	return moved, missing
}
