package natsperm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/connector/sim"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/gateway"
	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/persister"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
	"github.com/zapbus/zapbus/internal/web"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func logger(w *lockedBuf, user string) zerolog.Logger {
	return zerolog.New(w).With().Str("user", user).Logger()
}

// row is one line of the printed matrix.
type row struct {
	user, op, want, got string
	ok                  bool
}

type matrix struct {
	t    *testing.T
	e    *natsEnv
	rows []row
}

func (m *matrix) add(user, op, want, got string, ok bool) {
	m.rows = append(m.rows, row{user, op, want, got, ok})
	if !ok {
		m.t.Errorf("%s: %s: want %s, got %s", user, op, want, got)
	}
}

// allow runs a legitimate operation of user's job; it must succeed.
func (m *matrix) allow(user, op string, f func(ctx context.Context) error) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := f(ctx); err != nil {
		m.add(user, op, "works", "failed: "+err.Error(), false)
		return
	}
	m.add(user, op, "works", "ok", true)
}

// deny runs an attack as user on a fresh connection (with the user's own
// inbox prefix); the server must refuse it with a permissions violation.
func (m *matrix) deny(user, op string, f func(ctx context.Context, nc *nats.Conn) error) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	violation := make(chan string, 8)
	nc, err := nats.Connect(m.e.url(user), nats.CustomInboxPrefix(bus.InboxPrefix("zapbus-"+user)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				select {
				case violation <- err.Error():
				default:
				}
				cancel()
			}
		}))
	if err != nil {
		m.add(user, op, "refused", "connect: "+err.Error(), false)
		return
	}
	defer nc.Close()
	opErr := f(ctx, nc)
	_ = nc.FlushTimeout(2 * time.Second)
	select {
	case v := <-violation:
		m.add(user, op, "refused", shorten(v), true)
	case <-time.After(2 * time.Second):
		got := "succeeded"
		if opErr != nil {
			got = "failed without a permissions violation: " + opErr.Error()
		}
		m.add(user, op, "refused", got, false)
	}
}

func shorten(s string) string {
	s = strings.TrimPrefix(s, "nats: permissions violation: ")
	s = strings.TrimPrefix(s, "nats: ")
	return s
}

func (m *matrix) print() {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nUSER\tOPERATION\tWANT\tGOT\tPASS\n")
	for _, r := range m.rows {
		pass := "yes"
		if !r.ok {
			pass = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.user, r.op, r.want, r.got, pass)
	}
	_ = tw.Flush()
	m.t.Logf("NATS permission matrix against %s:%s", m.e.how, b.String())
}

func mustEnv(t *testing.T, m int64, id string, p event.Payload) event.Envelope {
	t.Helper()
	env, err := event.New(m, id, time.Now().UTC(), p)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func expect(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf(format, args...)
}

// TestPermissionMatrix starts a real nats-server from the repo's nats.conf
// and checks that every service can do its whole job with its own user and
// that every attack is refused by the server.
func TestPermissionMatrix(t *testing.T) {
	e := startNATS(t)
	m := &matrix{t: t, e: e}
	defer m.print()
	logs := &lockedBuf{}
	ctx := context.Background()

	// Before provisioning, a service does not create anything: it says
	// what to run, and the error is not permanent (a retry loop waits).
	m.allow("connector", "start before provisioning: ErrNotProvisioned naming the provision step", func(ctx context.Context) error {
		_, err := openService(ctx, t, e, "connector", bus.Config{}, logs)
		var perm interface{ Permanent() bool }
		if errors.As(err, &perm) && perm.Permanent() {
			return fmt.Errorf("permanent error %v", err)
		}
		return expect(errors.Is(err, bus.ErrNotProvisioned) && strings.Contains(err.Error(), "zapbus-admin provision"),
			"want ErrNotProvisioned naming zapbus-admin provision, got %v", err)
	})
	m.deny("persister", "provision streams (STREAM.CREATE)", func(ctx context.Context, nc *nats.Conn) error {
		b, err := bus.New(nc, bus.Config{Provision: true})
		if err != nil {
			return err
		}
		return b.Ensure(ctx)
	})

	var admin *bus.Bus
	m.allow("admin", "provision streams and buckets (bus.Open with Provision)", func(ctx context.Context) error {
		var err error
		admin, err = openService(ctx, t, e, "admin", bus.Config{Provision: true, LeaseTTL: 15 * time.Second}, logs)
		return err
	})
	if admin == nil {
		t.FailNow()
	}

	// The services start as their mains do: bus.Open verifies their objects.
	open := func(user string, cfg bus.Config) *bus.Bus {
		var b *bus.Bus
		m.allow(user, "connect, check server version, verify its streams (bus.Open)", func(ctx context.Context) error {
			var err error
			b, err = openService(ctx, t, e, user, cfg, logs)
			return err
		})
		if b == nil {
			t.FailNow()
		}
		return b
	}
	conn := open("connector", bus.Config{LeaseTTL: 15 * time.Second})
	conn2, err := openService(ctx, t, e, "connector", bus.Config{}, logs)
	if err != nil {
		t.Fatal(err)
	}
	pers := open("persister", bus.Config{})
	notif := open("notifier", bus.Config{})
	hooks := open("webhooks", bus.Config{})
	gw := open("gateway", bus.Config{})
	m.allow("connector", "lease TTL adopted from the provisioned bucket", func(context.Context) error {
		return expect(conn2.Config().LeaseTTL == 15*time.Second, "lease TTL %s", conn2.Config().LeaseTTL)
	})

	// Live subscriptions first, so the publishes below reach them.
	liveNotifier, err := notif.NC.SubscribeSync(bus.LivePrefix + event.MentoradoEvents(1))
	if err != nil {
		t.Fatal(err)
	}
	qrNotifier, err := notif.NC.SubscribeSync(event.QRSubject(1))
	if err != nil {
		t.Fatal(err)
	}
	revokes, err := notif.NC.SubscribeSync("zapbus.notifier.revoke")
	if err != nil {
		t.Fatal(err)
	}
	if err := notif.NC.Flush(); err != nil {
		t.Fatal(err)
	}

	// Connector: events, QR, dead letters, leases, sends, commands.
	m.allow("connector", "publish an event to WA_EVENTS (PubAck)", func(ctx context.Context) error {
		_, err := conn.Publish(ctx, mustEnv(t, 1, "1:conn:test", &event.Connection{Status: event.StatusConnecting}))
		return err
	})
	m.allow("connector", "publish a QR to WA_QR (PubAck)", func(ctx context.Context) error {
		q := &event.QR{Code: "2@secret", ExpiresAt: time.Now().Add(time.Minute).UTC()}
		_, err := conn.Publish(ctx, mustEnv(t, 1, event.QREventID(1, q), q))
		return err
	})
	m.allow("connector", "dead-letter an input (zapbus.dlq.connector)", func(ctx context.Context) error {
		return conn.DeadLetterFrom(ctx, "connector", "x1", "whatsmeow", []byte("{}"), errors.New("test"))
	})
	var leases, sends jetstream.KeyValue
	m.allow("connector", "open KV WA_LEASES and WA_SENDS", func(ctx context.Context) error {
		var err error
		if leases, err = conn.JS.KeyValue(ctx, bus.BucketLeases); err != nil {
			return err
		}
		sends, err = conn.JS.KeyValue(ctx, bus.BucketSends)
		return err
	})
	if leases == nil || sends == nil {
		t.FailNow()
	}
	m.allow("connector", "lease: watch, create, get, update, delete", func(ctx context.Context) error {
		w, err := leases.WatchAll(ctx, jetstream.UpdatesOnly())
		if err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		defer func() { _ = w.Stop() }()
		rev, err := leases.Create(ctx, "m1", []byte("a"))
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
		if _, err := leases.Get(ctx, "m1"); err != nil {
			return fmt.Errorf("get: %w", err)
		}
		if rev, err = leases.Update(ctx, "m1", []byte("a"), rev); err != nil {
			return fmt.Errorf("update: %w", err)
		}
		for {
			select {
			case u := <-w.Updates():
				if u != nil && u.Key() == "m1" {
					return leases.Delete(ctx, "m1", jetstream.LastRevision(rev))
				}
			case <-ctx.Done():
				return errors.New("watcher saw no update")
			}
		}
	})
	m.allow("connector", "sends: create, get, update, delete", func(ctx context.Context) error {
		rev, err := sends.Create(ctx, "k1", []byte("pending"))
		if err != nil {
			return err
		}
		if rev, err = sends.Update(ctx, "k1", []byte("done"), rev); err != nil {
			return err
		}
		if _, err := sends.Get(ctx, "k1"); err != nil {
			return err
		}
		return sends.Delete(ctx, "k1", jetstream.LastRevision(rev))
	})

	// Media: the connector stores a downloaded file and reads it back (a
	// range, as the upload to WhatsApp or an HTTP Range does); the notifier
	// serves it, stores an upload and deletes a tenant's files.
	mediaFile := bytes.Repeat([]byte("voice note bytes "), 20_000) // 340 KB: three chunks
	var mediaID string
	m.allow("connector", "media: put a file twice (stored once), stat, read a range, delete (WA_MEDIA)", func(ctx context.Context) error {
		ms, err := conn.MediaStore(ctx)
		if err != nil {
			return err
		}
		info, created, err := ms.Put(ctx, 1, bytes.NewReader(mediaFile), "audio/ogg; codecs=opus", 1<<20)
		if err != nil || !created {
			return fmt.Errorf("put: created=%v %v", created, err)
		}
		if _, created, err = ms.Put(ctx, 1, bytes.NewReader(mediaFile), "audio/ogg; codecs=opus", 1<<20); err != nil || created {
			return fmt.Errorf("second put: created=%v %v", created, err)
		}
		if _, err := ms.Stat(ctx, 1, info.ID); err != nil {
			return fmt.Errorf("stat: %w", err)
		}
		o, err := ms.Open(ctx, 1, info.ID)
		if err != nil {
			return err
		}
		defer o.Close()
		if _, err := o.Seek(200_000, io.SeekStart); err != nil {
			return err
		}
		part := make([]byte, 1000)
		if _, err := io.ReadFull(o, part); err != nil {
			return fmt.Errorf("read range: %w", err)
		}
		if !bytes.Equal(part, mediaFile[200_000:201_000]) {
			return errors.New("range read the wrong bytes")
		}
		// a file of its own to delete; the first stays for the notifier
		other, _, err := ms.Put(ctx, 1, strings.NewReader("to delete"), "text/plain", 100)
		if err != nil {
			return err
		}
		if err := ms.Delete(ctx, 1, other.ID); err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		mediaID = info.ID
		return nil
	})
	m.allow("notifier", "media: read the connector's file, store an upload, delete a tenant's files (WA_MEDIA)", func(ctx context.Context) error {
		ms, err := notif.MediaStore(ctx)
		if err != nil {
			return err
		}
		o, err := ms.Open(ctx, 1, mediaID)
		if err != nil {
			return err
		}
		got, err := io.ReadAll(o)
		o.Close()
		if err != nil || !bytes.Equal(got, mediaFile) {
			return fmt.Errorf("read %d bytes: %v", len(got), err)
		}
		up, _, err := ms.Put(ctx, 2, strings.NewReader("%PDF-1.7 proposal"), "application/pdf", 1<<20)
		if err != nil {
			return fmt.Errorf("upload: %w", err)
		}
		if err := ms.DeleteAll(ctx, 2); err != nil {
			return fmt.Errorf("delete all: %w", err)
		}
		if _, err := ms.Stat(ctx, 2, up.ID); !errors.Is(err, media.ErrNotFound) {
			return fmt.Errorf("stat after DeleteAll: %v", err)
		}
		return nil
	})

	// Commands: the notifier asks, connector 1 takes it from the queue
	// group and relays to connector 2 (the owner), whose answer returns.
	ownerSub, err := conn2.NC.Subscribe("zapbus.connector.B.>", func(msg *nats.Msg) {
		_ = msg.Respond([]byte(`{"status":"connected"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ownerSub.Unsubscribe()
	cmdSub, err := conn.NC.QueueSubscribe(event.CommandWildcard, connector.QueueGroup, func(msg *nats.Msg) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fwd := &nats.Msg{Subject: "zapbus.connector.B." + msg.Subject, Data: msg.Data}
		resp, err := conn.NC.RequestMsgWithContext(ctx, fwd)
		if err != nil {
			_ = msg.Respond([]byte(`{"error":"relay"}`))
			return
		}
		_ = msg.Respond(resp.Data)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cmdSub.Unsubscribe()
	if err := conn.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := conn2.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	var cmdInbox string
	m.allow("notifier", "command request, relayed between connectors, reply on its own inbox", func(ctx context.Context) error {
		msg, err := notif.NC.RequestWithContext(ctx, event.CommandSubject(1, event.VerbStatus), []byte("{}"))
		if err != nil {
			return err
		}
		cmdInbox = msg.Subject
		return expect(strings.Contains(string(msg.Data), "connected") && strings.HasPrefix(msg.Subject, "_INBOX_notifier."),
			"reply %q on %s", msg.Data, msg.Subject)
	})
	m.allow("notifier", "live event from WA_EVENTS republish (live.wa.1.evt.>)", func(context.Context) error {
		msg, err := liveNotifier.NextMsg(5 * time.Second)
		if err != nil {
			return err
		}
		return expect(msg.Header.Get("Nats-Sequence") != "", "no Nats-Sequence header")
	})
	m.allow("notifier", "live QR (wa.1.qr) and current QR from WA_QR", func(ctx context.Context) error {
		if _, err := qrNotifier.NextMsg(5 * time.Second); err != nil {
			return fmt.Errorf("live qr: %w", err)
		}
		st, err := notif.JS.Stream(ctx, bus.StreamQR)
		if err != nil {
			return err
		}
		_, err = st.GetLastMsgForSubject(ctx, event.QRSubject(1))
		return err
	})
	m.allow("notifier", "resume: ordered consumer on WA_EVENTS for one tenant", func(ctx context.Context) error {
		return fetchOne(ctx, notif, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{event.MentoradoEvents(1)},
			DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:    1,
		})
	})
	m.allow("notifier", "token revocation broadcast (zapbus.notifier.revoke)", func(ctx context.Context) error {
		if err := notif.NC.Publish("zapbus.notifier.revoke", []byte(`{"mentorado_id":1}`)); err != nil {
			return err
		}
		_, err := revokes.NextMsg(5 * time.Second)
		return err
	})

	// Provider gateway (issue #16): it serves commands for mentorados on
	// meta or zapi in its queue group, asked by the notifier or relayed by
	// a connector, and publishes what the providers report.
	gwSub, err := gw.NC.QueueSubscribe(event.ProviderCommandWildcard(event.ProviderMeta), gateway.QueueGroup, func(msg *nats.Msg) {
		_ = msg.Respond([]byte(`{"status":{"status":"connected"}}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer gwSub.Unsubscribe()
	if err := gw.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	m.allow("notifier+gateway", "command for a meta mentorado (zapbus.provider.meta.wa.1.cmd.status), reply on the notifier's inbox", func(ctx context.Context) error {
		msg, err := notif.NC.RequestWithContext(ctx, event.ProviderCommandSubject(event.ProviderMeta, 1, event.VerbStatus), []byte("{}"))
		if err != nil {
			return err
		}
		return expect(strings.Contains(string(msg.Data), "connected") && strings.HasPrefix(msg.Subject, "_INBOX_notifier."), "reply %q on %s", msg.Data, msg.Subject)
	})
	m.allow("connector+gateway", "relay a command to the gateway (zapbus.provider.meta.wa.1.cmd.send), reply on the connector's inbox", func(ctx context.Context) error {
		msg, err := conn.NC.RequestWithContext(ctx, event.ProviderCommandSubject(event.ProviderMeta, 1, event.VerbSend), []byte("{}"))
		if err != nil {
			return err
		}
		return expect(strings.HasPrefix(msg.Subject, "_INBOX_connector."), "reply on %s", msg.Subject)
	})
	m.allow("gateway", "publish an event and a QR (PubAck from WA_EVENTS and WA_QR)", func(ctx context.Context) error {
		env := mustEnv(t, 1, "1:conn:gw", &event.Connection{Status: event.StatusConnected})
		env.Provider = event.ProviderZAPI
		if _, err := gw.Publish(ctx, env); err != nil {
			return err
		}
		q := &event.QR{Code: "zapi-qr", ExpiresAt: time.Now().Add(time.Minute).UTC()}
		qenv := mustEnv(t, 1, event.QREventID(1, q), q)
		qenv.Provider = event.ProviderZAPI
		_, err := gw.Publish(ctx, qenv)
		return err
	})
	m.allow("gateway", "sends: create, get, update, delete (WA_SENDS)", func(ctx context.Context) error {
		kv, err := gw.KeyValue(ctx, bus.BucketSends)
		if err != nil {
			return err
		}
		rev, err := kv.Create(ctx, "k-gw", []byte("pending"))
		if err != nil {
			return err
		}
		if rev, err = kv.Update(ctx, "k-gw", []byte("sent"), rev); err != nil {
			return err
		}
		if _, err := kv.Get(ctx, "k-gw"); err != nil {
			return err
		}
		return kv.Delete(ctx, "k-gw", jetstream.LastRevision(rev))
	})
	m.allow("gateway", "media: store a received file, read a file to send (WA_MEDIA)", func(ctx context.Context) error {
		ms, err := gw.MediaStore(ctx)
		if err != nil {
			return err
		}
		if _, _, err := ms.Put(ctx, 1, strings.NewReader("\x89PNG from meta"), "image/png", 1<<20); err != nil {
			return fmt.Errorf("put: %w", err)
		}
		o, err := ms.Open(ctx, 1, mediaID)
		if err != nil {
			return err
		}
		defer o.Close()
		got, err := io.ReadAll(o)
		return expect(err == nil && bytes.Equal(got, mediaFile), "read %d bytes: %v", len(got), err)
	})

	// Persister: durable consumer, ack, dead letter, replay.
	pcfg := persister.Config{}.ConsumerConfig()
	var durable jetstream.Consumer
	m.allow("persister", "create its durable consumer on WA_EVENTS", func(ctx context.Context) error {
		var err error
		durable, err = pers.JS.CreateOrUpdateConsumer(ctx, bus.StreamEvents, pcfg)
		return err
	})
	if durable == nil {
		t.FailNow()
	}
	var consumed jetstream.Msg
	m.allow("persister", "fetch, in-progress, nak, refetch and ack", func(ctx context.Context) error {
		fetch := func() (jetstream.Msg, error) {
			batch, err := durable.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				return nil, err
			}
			var got jetstream.Msg
			for msg := range batch.Messages() {
				got = msg
			}
			if got == nil {
				return nil, errors.New("nothing fetched")
			}
			return got, nil
		}
		msg, err := fetch()
		if err != nil {
			return err
		}
		if err := msg.InProgress(); err != nil {
			return err
		}
		if err := msg.Nak(); err != nil {
			return err
		}
		if consumed, err = fetch(); err != nil {
			return fmt.Errorf("after nak: %w", err)
		}
		return consumed.DoubleAck(ctx)
	})
	m.allow("persister", "dead-letter an event (zapbus.dlq.WA_EVENTS)", func(ctx context.Context) error {
		return pers.DeadLetter(ctx, bus.StreamEvents, "wa.1.evt.connection", 1, []byte("{}"), errors.New("test"))
	})
	m.allow("persister", "publish a lead event (wa.1.evt.lead, from its outbox)", func(ctx context.Context) error {
		env, err := event.New(1, event.LeadEventID(1, 7, event.LeadCreated, ""), time.Now(),
			&event.Lead{LeadID: 7, Change: event.LeadCreated, Phone: "5511912345678"})
		if err != nil {
			return err
		}
		_, err = pers.Publish(ctx, env)
		return err
	})
	m.allow("persister", "publish a campaign progress event (wa.1.evt.campaign, its reporter)", func(ctx context.Context) error {
		c := &event.Campaign{CampaignID: 7, Name: "Black Friday", State: event.CampaignRunning, Counts: event.CampaignCounts{Total: 3, Pending: 2, Sent: 1}}
		env, err := event.New(1, event.CampaignEventID(1, c, 1), time.Now(), c)
		if err != nil {
			return err
		}
		_, err = pers.Publish(ctx, env)
		return err
	})
	m.allow("persister", "replay: ordered consumer over WA_EVENTS", func(ctx context.Context) error {
		return fetchOne(ctx, pers, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{event.EventsWildcard},
			DeliverPolicy:  jetstream.DeliverAllPolicy,
		})
	})

	// Webhooks: one durable per endpoint (several filter subjects, one,
	// or an admin-level endpoint's every tenant), fetch in order, ack,
	// look up, list, delete; its own events and dead letters.
	whCons := func(name string, filters ...string) jetstream.ConsumerConfig {
		c := jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1,
			AckWait: 30 * time.Second, MaxDeliver: 3, BackOff: []time.Duration{time.Second, 2 * time.Second},
			DeliverPolicy: jetstream.DeliverAllPolicy}
		if len(filters) == 1 {
			c.FilterSubject = filters[0]
		} else {
			c.FilterSubjects = filters
		}
		return c
	}
	m.allow("webhooks", "endpoint consumer with several filters (CONSUMER.CREATE.WA_EVENTS.<name>): fetch, in-progress, nak, ack", func(ctx context.Context) error {
		c, err := hooks.JS.CreateOrUpdateConsumer(ctx, bus.StreamEvents, whCons("wh_901_g1", "wa.1.evt.connection", "wa.1.evt.message"))
		if err != nil {
			return err
		}
		fetch := func() (jetstream.Msg, error) {
			batch, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				return nil, err
			}
			for msg := range batch.Messages() {
				return msg, nil
			}
			return nil, errors.New("nothing fetched")
		}
		msg, err := fetch()
		if err != nil {
			return err
		}
		if err := msg.InProgress(); err != nil {
			return err
		}
		if err := msg.NakWithDelay(10 * time.Millisecond); err != nil {
			return err
		}
		if msg, err = fetch(); err != nil {
			return fmt.Errorf("after nak: %w", err)
		}
		if err := msg.DoubleAck(ctx); err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		return expect(info.AckFloor.Stream > 0 && len(info.Config.FilterSubjects) == 2, "info %+v", info.Config)
	})
	m.allow("webhooks", "endpoint consumer with one filter (CONSUMER.CREATE.WA_EVENTS.<name>.<filter>)", func(ctx context.Context) error {
		_, err := hooks.JS.CreateOrUpdateConsumer(ctx, bus.StreamEvents, whCons("wh_902_g1", "wa.1.evt.connection"))
		return err
	})

	m.allow("webhooks", "admin-level endpoint consumer (every tenant: wa.*.evt.<type>)", func(ctx context.Context) error {
		_, err := hooks.JS.CreateOrUpdateConsumer(ctx, bus.StreamEvents, whCons("wh_903_g1", "wa.*.evt.connection", "wa.*.evt.message"))
		return err
	})
	m.allow("webhooks", "list consumers, recreate an endpoint's at a new generation, delete the old one", func(ctx context.Context) error {
		st, err := hooks.JS.Stream(ctx, bus.StreamEvents)
		if err != nil {
			return err
		}
		names := st.ConsumerNames(ctx)
		var found []string
		for n := range names.Name() {
			found = append(found, n)
		}
		if err := names.Err(); err != nil {
			return err
		}
		if !slices.Contains(found, "wh_903_g1") {
			return fmt.Errorf("names %v", found)
		}
		lister := st.ListConsumers(ctx)
		for range lister.Info() {
		}
		if err := lister.Err(); err != nil {
			return fmt.Errorf("list: %w", err)
		}
		if _, err := hooks.JS.CreateOrUpdateConsumer(ctx, bus.StreamEvents, whCons("wh_903_g2", "wa.*.evt.connection", "wa.*.evt.message")); err != nil {
			return err
		}
		if err := hooks.JS.DeleteConsumer(ctx, bus.StreamEvents, "wh_903_g1"); err != nil {
			return err
		}
		// the others too: the real dispatcher below has endpoints of its own
		for _, n := range []string{"wh_901_g1", "wh_902_g1", "wh_903_g2"} {
			if err := hooks.JS.DeleteConsumer(ctx, bus.StreamEvents, n); err != nil {
				return fmt.Errorf("delete %s: %w", n, err)
			}
		}
		return nil
	})
	m.allow("webhooks", "publish a webhook state event (wa.1.evt.webhook)", func(ctx context.Context) error {
		at := time.Now()
		_, err := hooks.Publish(ctx, mustEnv(t, 1, event.WebhookEventID(1, 5, event.WebhookPaused, at),
			&event.Webhook{WebhookID: 5, State: event.WebhookPaused, Reason: "failing for 24h", Host: "example.com"}))
		return err
	})
	m.allow("webhooks", "dead-letter a delivery (zapbus.dlq.webhooks, PubAck from WA_DLQ)", func(ctx context.Context) error {
		_, err := hooks.JS.PublishMsg(ctx, &nats.Msg{Subject: bus.DLQSubjectPrefix + "webhooks", Data: []byte("{}"),
			Header: nats.Header{bus.HeaderError: []string{"webhook: 12 attempts failed"}}}, jetstream.WithMsgID("dlq:webhook:1:1"))
		return err
	})
	m.allow("notifier", "look up the persister's lag (CONSUMER.INFO.WA_EVENTS.persister, operator console)", func(ctx context.Context) error {
		c, err := notif.JS.Consumer(ctx, bus.StreamEvents, pcfg.Durable)
		if err != nil {
			return err
		}
		_, err = c.Info(ctx)
		return err
	})

	// The real dispatcher (internal/webhook) with the webhooks user: an
	// endpoint on a local receiver gets a published message.
	t.Run("real webhook dispatcher", func(t *testing.T) { realDispatcher(t, m, hooks, conn, logs) })

	// The real persister (Run and Replay) with the persister user, on a
	// fresh database: an undecodable event is dead-lettered and acked.
	t.Run("real persister", func(t *testing.T) {
		db, err := store.Open(ctx, testenv.Postgres(t))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		p, err := persister.New(persister.Config{MaxWait: 50 * time.Millisecond}, db, pers, logger(logs, "persister"))
		if err != nil {
			t.Fatal(err)
		}
		ack, err := conn.JS.Publish(ctx, "wa.1.evt.message", []byte(`{"not":"an envelope"}`), jetstream.WithMsgID("poison-1"))
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Run(runCtx) }()
		m.allow("persister", "Run: durable consume, dead-letter a poison event, ack (internal/persister)", func(ctx context.Context) error {
			dlq, err := admin.JS.Stream(ctx, bus.StreamDLQ)
			if err != nil {
				return err
			}
			want := fmt.Sprint(ack.Sequence)
			for ctx.Err() == nil {
				msg, err := dlq.GetLastMsgForSubject(ctx, bus.DLQSubjectPrefix+bus.StreamEvents)
				if err == nil && msg.Header.Get(bus.HeaderOriginalSeq) == want {
					c, err := admin.JS.Consumer(ctx, bus.StreamEvents, pcfg.Durable)
					if err != nil {
						return err
					}
					if info, err := c.Info(ctx); err == nil && info.AckFloor.Stream >= ack.Sequence {
						return nil
					}
				}
				time.Sleep(50 * time.Millisecond)
			}
			return fmt.Errorf("seq %d never dead-lettered and acked: %w", ack.Sequence, ctx.Err())
		})
		stop()
		if err := <-done; err != nil {
			t.Errorf("persister Run: %v", err)
		}
		m.allow("persister", "Replay from a sequence (internal/persister)", func(ctx context.Context) error {
			st, err := p.Replay(ctx, persister.ReplayOptions{FromSeq: ack.Sequence})
			if err != nil {
				return err
			}
			return expect(st.LastSeq >= ack.Sequence && st.DeadLettered == 1, "replay stats %+v", st)
		})
	})

	// The real connector (internal/connector, simulated WhatsApp client) and
	// the real notifier HTTP edge (internal/web), each with its own user:
	// pair by QR, send, receive, and resume a stream with Last-Event-ID.
	_ = cmdSub.Unsubscribe()
	_ = ownerSub.Unsubscribe()
	t.Run("real connector and notifier", func(t *testing.T) {
		db, err := store.Open(ctx, testenv.Postgres(t))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		world := sim.NewWorld()
		cb, err := openService(ctx, t, e, "connector", bus.Config{LeaseTTL: 15 * time.Second}, logs)
		if err != nil {
			t.Fatal(err)
		}
		c, err := connector.New(connector.Config{InstanceID: "real", RestoreJitter: time.Millisecond,
			Policy: connector.Policy{Jitter: -1}}, db, cb, &sim.Factory{W: world}, logger(logs, "connector"))
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(runCtx) }()
		defer func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("connector Run: %v", err)
			}
		}()
		const adminToken = "natsperm-admin-token-0123456789abcdef"
		srv, err := web.New(web.Config{AdminToken: adminToken}, db, notif, logger(logs, "notifier"))
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv.Handler())
		defer hs.Close()
		call := func(ctx context.Context, method, path, token, body string, hdr ...string) (*http.Response, error) {
			var rd io.Reader
			if body != "" {
				rd = strings.NewReader(body)
			}
			req, err := http.NewRequestWithContext(ctx, method, hs.URL+path, rd)
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+token)
			if body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			return http.DefaultClient.Do(req)
		}
		var created struct {
			ID    int64  `json:"id"`
			Token string `json:"token"`
		}
		resp, err := call(ctx, "POST", "/v1/admin/mentorados", adminToken, `{"name":"Ana"}`)
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&created)
		resp.Body.Close()
		if err != nil || created.Token == "" {
			t.Fatalf("create mentorado: %d %v", resp.StatusCode, err)
		}
		// A live SSE stream, read line by line in the background.
		sseCtx, sseStop := context.WithCancel(ctx)
		defer sseStop()
		resp, err = call(sseCtx, "GET", "/v1/events", created.Token, "")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /v1/events: %v", err)
		}
		defer resp.Body.Close()
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		waitLine := func(ctx context.Context, match func(string) bool) error {
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						return errors.New("stream closed")
					}
					if match(l) {
						return nil
					}
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		m.allow("notifier+connector", "connect by QR: command, lease, session, status live on SSE", func(ctx context.Context) error {
			resp, err := call(ctx, "POST", "/v1/whatsapp/connect", created.Token, `{"method":"qr"}`)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				return fmt.Errorf("connect: %d", resp.StatusCode)
			}
			// the connector's own status event (the stream opens with the
			// QR published earlier in this test, so "event: qr" is not enough)
			return waitLine(ctx, func(l string) bool { return strings.Contains(l, `"status":"qr"`) })
		})
		m.allow("connector", "paired: connection events live on SSE", func(ctx context.Context) error {
			if err := world.ScanQR(created.ID, "5511987654321"); err != nil {
				return err
			}
			return waitLine(ctx, func(l string) bool { return strings.Contains(l, `"status":"connected"`) })
		})
		m.allow("notifier+connector", "send with a client id (WA_SENDS), reply 201", func(ctx context.Context) error {
			resp, err := call(ctx, "POST", "/v1/messages", created.Token, `{"phone":"5511912345678","text":"Olá","client_id":"c-1"}`)
			if err != nil {
				return err
			}
			resp.Body.Close()
			return expect(resp.StatusCode == http.StatusCreated, "send: %d", resp.StatusCode)
		})
		var lastSeq uint64
		m.allow("connector", "inbound message published, live on SSE", func(ctx context.Context) error {
			if _, _, err := world.InjectText(created.ID, "5511912345678", "oi"); err != nil {
				return err
			}
			return waitLine(ctx, func(l string) bool {
				if n, err := fmt.Sscanf(l, "id: %d", &lastSeq); n == 1 && err == nil {
					return false
				}
				return strings.Contains(l, `"text":"oi"`)
			})
		})
		// Consumers' deliver subjects escape subject permissions: the persister
		// may create consumers (replay), so it can push stored events onto a
		// subject someone subscribes to literally, such as a dashboard's
		// wa.<m>.qr. The notifier must ignore such deliveries.
		m.allow("persister", "push stored events onto wa.<m>.qr: notifier does not serve them", func(ctx context.Context) error {
			for drained := false; !drained; {
				select {
				case <-lines:
				default:
					drained = true
				}
			}
			if _, err := pers.JS.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{
				Name: "evil_qr", FilterSubject: event.MentoradoEvents(created.ID), DeliverSubject: event.QRSubject(created.ID),
				AckPolicy: jetstream.AckNonePolicy,
			}); err != nil {
				return err
			}
			defer func() { _ = pers.JS.DeleteConsumer(context.WithoutCancel(ctx), bus.StreamEvents, "evil_qr") }()
			for !strings.Contains(logs.String(), "qr delivered by a JetStream consumer ignored") {
				if err := ctx.Err(); err != nil {
					return err
				}
				time.Sleep(20 * time.Millisecond)
			}
			for {
				select {
				case l := <-lines:
					if l == "event: qr" {
						return errors.New("a pushed event reached the dashboard as a QR")
					}
				default:
					return nil
				}
			}
		})
		m.allow("notifier", "SSE resume with Last-Event-ID: replay from WA_EVENTS", func(ctx context.Context) error {
			resp, err := call(ctx, "GET", "/v1/events", created.Token, "", "Last-Event-ID", fmt.Sprint(lastSeq-1))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if sc.Text() == fmt.Sprintf("id: %d", lastSeq) {
					return nil
				}
			}
			return fmt.Errorf("event %d never replayed: %v", lastSeq, sc.Err())
		})
	})

	// Backend: its named durable, live events.
	backend, err := nats.Connect(e.url("backend"), nats.CustomInboxPrefix("_INBOX_backend"))
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	bjs, err := jetstream.New(backend)
	if err != nil {
		t.Fatal(err)
	}
	m.allow("admin", "provision the backend team's consumer (zapbus-admin provision -consumer)", func(ctx context.Context) error {
		return admin.ProvisionConsumer(ctx, "backend", event.EventsWildcard)
	})
	m.allow("backend", "its durable \"backend\" on WA_EVENTS: look up, fetch and ack", func(ctx context.Context) error {
		cons, err := bjs.Consumer(ctx, bus.StreamEvents, "backend")
		if err != nil {
			return err
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		for msg := range batch.Messages() {
			return msg.DoubleAck(ctx)
		}
		return errors.New("nothing fetched")
	})
	m.allow("backend", "subscribe to live events (live.wa.>)", func(context.Context) error {
		sub, err := backend.SubscribeSync("live.wa.>")
		if err != nil {
			return err
		}
		defer sub.Unsubscribe()
		return backend.Flush()
	})

	// --- attacks ---
	dlqRepublish := func(ctx context.Context, nc *nats.Conn) error {
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		cfg := bus.Config{}.StreamConfigs()[2]
		cfg.RePublish = &jetstream.RePublish{Source: ">", Destination: "wa.2.cmd.send"}
		_, err = js.UpdateStream(ctx, cfg)
		return err
	}
	for _, u := range []string{"persister", "notifier", "connector", "backend", "webhooks", "gateway"} {
		m.deny(u, "update WA_DLQ with RePublish to wa.2.cmd.send", dlqRepublish)
	}
	rawReq := func(subject string, body string) func(ctx context.Context, nc *nats.Conn) error {
		return func(ctx context.Context, nc *nats.Conn) error {
			_, err := nc.RequestWithContext(ctx, subject, []byte(body))
			return err
		}
	}
	qrGet := rawReq("$JS.API.STREAM.MSG.GET.WA_QR", `{"last_by_subj":"wa.1.qr"}`)
	m.deny("persister", "read a pairing QR (STREAM.MSG.GET.WA_QR)", qrGet)
	m.deny("backend", "read a pairing QR (STREAM.MSG.GET.WA_QR)", qrGet)
	m.deny("persister", "read a pairing QR (DIRECT.GET.WA_QR)", rawReq("$JS.API.DIRECT.GET.WA_QR.wa.1.qr", ""))
	sendsGet := rawReq("$JS.API.DIRECT.GET.KV_WA_SENDS.$KV.WA_SENDS.k1", "")
	m.deny("persister", "read sent texts (DIRECT.GET.KV_WA_SENDS)", sendsGet)
	m.deny("notifier", "read sent texts (DIRECT.GET.KV_WA_SENDS)", sendsGet)
	m.deny("notifier", "read sent texts (STREAM.MSG.GET.KV_WA_SENDS)", rawReq("$JS.API.STREAM.MSG.GET.KV_WA_SENDS", `{"seq":1}`))
	m.deny("backend", "read WA_EVENTS bypassing its consumer (STREAM.MSG.GET)", rawReq("$JS.API.STREAM.MSG.GET.WA_EVENTS", `{"seq":1}`))

	// Shared inboxes.
	subscribe := func(subject string) func(ctx context.Context, nc *nats.Conn) error {
		return func(ctx context.Context, nc *nats.Conn) error {
			_, err := nc.SubscribeSync(subject)
			return err
		}
	}
	m.deny("backend", "subscribe to the connector's replies (_INBOX_connector.>)", subscribe("_INBOX_connector.>"))
	m.deny("backend", "subscribe to the notifier's replies (_INBOX_notifier.>)", subscribe("_INBOX_notifier.>"))
	m.deny("backend", "subscribe to the shared _INBOX.>", subscribe("_INBOX.>"))
	m.deny("notifier", "subscribe to the connector's replies (_INBOX_connector.>)", subscribe("_INBOX_connector.>"))
	m.deny("persister", "subscribe to commands (wa.*.cmd.>, send texts)", subscribe(event.CommandWildcard))
	m.deny("backend", "subscribe to pairing QRs (wa.*.qr)", subscribe(event.QRWildcard))
	forged := func(subject string) func(ctx context.Context, nc *nats.Conn) error {
		return func(ctx context.Context, nc *nats.Conn) error {
			return nc.Publish(subject, []byte(`{"status":"connected"}`))
		}
	}
	if cmdInbox == "" {
		cmdInbox = "_INBOX_notifier.x.y"
	}
	m.deny("backend", "publish a forged reply into a notifier inbox", forged(cmdInbox))
	m.deny("persister", "publish a forged reply into a notifier inbox", forged(cmdInbox))
	m.deny("notifier", "publish a forged reply into a connector inbox", forged("_INBOX_connector.x.y"))

	// Backend consumers anywhere.
	createCons := func(stream string, cfg jetstream.ConsumerConfig) func(ctx context.Context, nc *nats.Conn) error {
		return func(ctx context.Context, nc *nats.Conn) error {
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			_, err = js.CreateOrUpdateConsumer(ctx, stream, cfg)
			return err
		}
	}
	m.deny("backend", "push stored events onto wa.2.cmd.logout (push consumer)", createCons(bus.StreamEvents, jetstream.ConsumerConfig{
		Durable: "backend", FilterSubject: event.EventsWildcard, DeliverSubject: "wa.2.cmd.logout"}))
	m.deny("backend", "recreate its consumer (CONSUMER.CREATE.WA_EVENTS.backend)", createCons(bus.StreamEvents, jetstream.ConsumerConfig{
		Durable: "backend", FilterSubject: event.EventsWildcard, AckPolicy: jetstream.AckExplicitPolicy}))
	m.deny("backend", "delete its consumer", rawReq("$JS.API.CONSUMER.DELETE.WA_EVENTS.backend", ""))
	m.deny("backend", "create a consumer on WA_QR", createCons(bus.StreamQR, jetstream.ConsumerConfig{Durable: "backend"}))
	m.deny("backend", "create a consumer on KV_WA_SENDS", createCons("KV_WA_SENDS", jetstream.ConsumerConfig{Durable: "backend"}))
	m.deny("backend", "create another consumer on WA_EVENTS", createCons(bus.StreamEvents, jetstream.ConsumerConfig{Durable: "mine", FilterSubject: event.EventsWildcard}))
	m.deny("backend", "create an unfiltered consumer (multi-filter form)", createCons(bus.StreamEvents, jetstream.ConsumerConfig{Durable: "backend", FilterSubjects: []string{"wa.1.evt.>", "wa.2.evt.>"}}))
	m.deny("backend", "create an ephemeral consumer (legacy CONSUMER.CREATE.WA_EVENTS)", rawReq("$JS.API.CONSUMER.CREATE.WA_EVENTS", `{"stream_name":"WA_EVENTS","config":{"ack_policy":"none"}}`))
	delPersister := rawReq("$JS.API.CONSUMER.DELETE.WA_EVENTS.persister", "")
	m.deny("notifier", "delete the persister's durable consumer", delPersister)
	m.deny("connector", "delete the persister's durable consumer", delPersister)
	m.deny("notifier", "narrow the persister's durable to one tenant", createCons(bus.StreamEvents, func() jetstream.ConsumerConfig {
		c := pcfg
		c.FilterSubject = event.MentoradoEvents(1)
		return c
	}()))
	m.deny("notifier", "pull from the persister's durable (steal events)", rawReq("$JS.API.CONSUMER.MSG.NEXT.WA_EVENTS.persister", `{"batch":1,"no_wait":true}`))
	m.deny("backend", "pull from the persister's durable (steal events)", rawReq("$JS.API.CONSUMER.MSG.NEXT.WA_EVENTS.persister", `{"batch":1,"no_wait":true}`))
	m.deny("persister", "delete the backend team's durable", rawReq("$JS.API.CONSUMER.DELETE.WA_EVENTS.backend", ""))
	m.deny("notifier", "ack the persister's messages ($JS.ACK.WA_EVENTS.persister)", forged("$JS.ACK.WA_EVENTS.persister.1.1.1.1.0"))

	// Webhooks: only its own consumers, its own events.
	m.deny("webhooks", "pull from the persister's durable (steal events)", rawReq("$JS.API.CONSUMER.MSG.NEXT.WA_EVENTS.persister", `{"batch":1,"no_wait":true}`))
	m.deny("webhooks", "pull from the backend team's durable", rawReq("$JS.API.CONSUMER.MSG.NEXT.WA_EVENTS.backend", `{"batch":1,"no_wait":true}`))
	m.deny("webhooks", "read the persister's durable (CONSUMER.INFO)", rawReq("$JS.API.CONSUMER.INFO.WA_EVENTS.persister", ""))
	m.deny("webhooks", "ack the persister's messages ($JS.ACK.WA_EVENTS.persister)", forged("$JS.ACK.WA_EVENTS.persister.1.1.1.1.0"))
	m.deny("webhooks", "ack the backend's messages ($JS.ACK.WA_EVENTS.backend)", forged("$JS.ACK.WA_EVENTS.backend.1.1.1.1.0"))
	m.deny("webhooks", "delete the persister's durable consumer", delPersister)
	m.deny("webhooks", "narrow the persister's durable to one tenant (multi-filter form)", createCons(bus.StreamEvents, func() jetstream.ConsumerConfig {
		c := pcfg
		c.FilterSubject = ""
		c.FilterSubjects = []string{event.MentoradoEvents(1), event.MentoradoEvents(2)}
		return c
	}()))
	m.deny("webhooks", "create an ephemeral consumer (legacy CONSUMER.CREATE.WA_EVENTS)", rawReq("$JS.API.CONSUMER.CREATE.WA_EVENTS", `{"stream_name":"WA_EVENTS","config":{"ack_policy":"none"}}`))
	m.deny("webhooks", "create a consumer on WA_QR (read pairing QRs)", createCons(bus.StreamQR, jetstream.ConsumerConfig{Durable: "wh_9_g1"}))
	m.deny("webhooks", "create a consumer on KV_WA_SENDS", createCons("KV_WA_SENDS", jetstream.ConsumerConfig{Durable: "wh_9_g1"}))
	m.deny("webhooks", "read a pairing QR (STREAM.MSG.GET.WA_QR)", qrGet)
	m.deny("webhooks", "read WA_EVENTS bypassing a consumer (STREAM.MSG.GET)", rawReq("$JS.API.STREAM.MSG.GET.WA_EVENTS", `{"seq":1}`))
	m.deny("webhooks", "subscribe to live events (live.wa.>)", subscribe("live.wa.>"))
	m.deny("webhooks", "subscribe to commands (wa.*.cmd.>)", subscribe(event.CommandWildcard))
	m.deny("webhooks", "subscribe to the notifier's replies (_INBOX_notifier.>)", subscribe("_INBOX_notifier.>"))
	m.deny("webhooks", "publish a forged event (wa.2.evt.message)", forged("wa.2.evt.message"))
	m.deny("webhooks", "publish a forged lead event (wa.2.evt.lead)", forged("wa.2.evt.lead"))
	m.deny("webhooks", "publish a forged live event (live.wa.2.evt.webhook)", forged("live.wa.2.evt.webhook"))
	m.deny("webhooks", "publish a command (wa.2.cmd.send)", forged("wa.2.cmd.send"))
	m.deny("webhooks", "dead-letter as the connector (zapbus.dlq.connector)", forged("zapbus.dlq.connector"))
	m.deny("webhooks", "dead-letter as the persister (zapbus.dlq.WA_EVENTS)", forged("zapbus.dlq.WA_EVENTS"))
	m.deny("webhooks", "create a stream (STREAM.CREATE)", rawReq("$JS.API.STREAM.CREATE.HOOKS", `{"name":"HOOKS","subjects":["hooks.>"]}`))
	m.deny("notifier", "pause the persister's durable (CONSUMER.PAUSE)", rawReq("$JS.API.CONSUMER.PAUSE.WA_EVENTS.persister", `{"pause_until":"2999-01-01T00:00:00Z"}`))

	// Gateway: its commands and its events, nothing of WhatsApp Web's.
	m.deny("gateway", "subscribe to WhatsApp Web's commands (wa.*.cmd.>)", subscribe(event.CommandWildcard))
	m.deny("gateway", "subscribe to the notifier's replies (_INBOX_notifier.>)", subscribe("_INBOX_notifier.>"))
	m.deny("gateway", "subscribe to live events (live.wa.>)", subscribe("live.wa.>"))
	m.deny("gateway", "subscribe to relayed connector commands (zapbus.connector.>)", subscribe("zapbus.connector.>"))
	m.deny("gateway", "publish a command (wa.2.cmd.send)", forged("wa.2.cmd.send"))
	m.deny("gateway", "relay a command to a connector (zapbus.connector.B.>)", forged("zapbus.connector.B.wa.2.cmd.send"))
	m.deny("gateway", "publish a forged reply into a notifier inbox", forged(cmdInbox))
	m.deny("gateway", "publish a forged live event (live.wa.2.evt.message)", forged("live.wa.2.evt.message"))
	m.deny("gateway", "revoke tokens (zapbus.notifier.revoke)", forged("zapbus.notifier.revoke"))
	m.deny("gateway", "write a lease ($KV.WA_LEASES.m1)", forged("$KV.WA_LEASES.m1"))
	m.deny("gateway", "read a lease (DIRECT.GET.KV_WA_LEASES)", rawReq("$JS.API.DIRECT.GET.KV_WA_LEASES.$KV.WA_LEASES.m1", ""))
	m.deny("gateway", "dead-letter (zapbus.dlq.connector)", forged("zapbus.dlq.connector"))
	m.deny("gateway", "read a pairing QR (STREAM.MSG.GET.WA_QR)", qrGet)
	m.deny("gateway", "read WA_EVENTS (STREAM.MSG.GET)", rawReq("$JS.API.STREAM.MSG.GET.WA_EVENTS", `{"seq":1}`))
	m.deny("gateway", "create a consumer on WA_EVENTS", createCons(bus.StreamEvents, jetstream.ConsumerConfig{Durable: "gw", FilterSubject: event.EventsWildcard}))
	m.deny("gateway", "pull from the persister's durable (steal events)", rawReq("$JS.API.CONSUMER.MSG.NEXT.WA_EVENTS.persister", `{"batch":1,"no_wait":true}`))
	m.deny("gateway", "create a stream (STREAM.CREATE)", rawReq("$JS.API.STREAM.CREATE.GW", `{"name":"GW","subjects":["gw.>"]}`))
	for _, u := range []string{"backend", "persister", "webhooks"} {
		m.deny(u, "command a meta mentorado (zapbus.provider.meta.wa.2.cmd.send)", forged(event.ProviderCommandSubject(event.ProviderMeta, 2, event.VerbSend)))
	}
	m.deny("notifier", "serve provider commands (subscribe zapbus.provider.>)", subscribe("zapbus.provider.>"))
	m.deny("connector", "serve provider commands (subscribe zapbus.provider.>)", subscribe("zapbus.provider.>"))
	m.deny("notifier", "publish outside provider command subjects (zapbus.provider.meta.x)", forged("zapbus.provider.meta.x"))

	// Media files are for the connector, the notifier and the gateway only.
	mediaMeta := "$JS.API.DIRECT.GET.OBJ_WA_MEDIA.$O.WA_MEDIA.M." + base64.URLEncoding.EncodeToString([]byte(media.ObjectName(1, mediaID)))
	mediaChunk := rawReq("$JS.API.DIRECT.GET.OBJ_WA_MEDIA", `{"seq":1,"next_by_subj":"$O.WA_MEDIA.C.>"}`)
	for _, u := range []string{"backend", "persister", "webhooks"} {
		m.deny(u, "read a media file's description (DIRECT.GET.OBJ_WA_MEDIA.$O.WA_MEDIA.M.…)", rawReq(mediaMeta, ""))
		m.deny(u, "read media chunks (DIRECT.GET.OBJ_WA_MEDIA)", mediaChunk)
		m.deny(u, "read media chunks (STREAM.MSG.GET.OBJ_WA_MEDIA)", rawReq("$JS.API.STREAM.MSG.GET.OBJ_WA_MEDIA", `{"seq":1}`))
		m.deny(u, "list media files (STREAM.INFO.OBJ_WA_MEDIA)", rawReq("$JS.API.STREAM.INFO.OBJ_WA_MEDIA", `{"subjects_filter":"$O.WA_MEDIA.M.>"}`))
		m.deny(u, "write a media chunk ($O.WA_MEDIA.C.x)", forged("$O.WA_MEDIA.C.x"))
		m.deny(u, "replace a media file's description ($O.WA_MEDIA.M.…)", forged("$O.WA_MEDIA.M.MS8x"))
		m.deny(u, "watch files being stored (subscribe $O.WA_MEDIA.>)", subscribe("$O.WA_MEDIA.>"))
		m.deny(u, "read media through a consumer on OBJ_WA_MEDIA", createCons(bus.StreamMedia, jetstream.ConsumerConfig{Name: "steal", AckPolicy: jetstream.AckNonePolicy}))
	}
	m.deny("notifier", "watch files being stored (subscribe $O.WA_MEDIA.>)", subscribe("$O.WA_MEDIA.>"))
	for _, u := range []string{"notifier", "connector"} {
		// a consumer's deliver subject escapes permissions: pushing chunks
		// onto live.wa.> would hand customers' files to backend teams
		m.deny(u, "push media chunks onto live.wa.1.evt.x (consumer on OBJ_WA_MEDIA)", createCons(bus.StreamMedia, jetstream.ConsumerConfig{
			Name: "leak", DeliverSubject: "live.wa.1.evt.x", AckPolicy: jetstream.AckNonePolicy}))
		m.deny(u, "republish OBJ_WA_MEDIA onto live.wa.> (STREAM.UPDATE)", rawReq("$JS.API.STREAM.UPDATE.OBJ_WA_MEDIA",
			`{"name":"OBJ_WA_MEDIA","subjects":["$O.WA_MEDIA.C.>","$O.WA_MEDIA.M.>"],"storage":"file","num_replicas":1,"allow_rollup_hdrs":true,"allow_direct":true,"discard":"new","republish":{"src":">","dest":"live.wa.1.evt.x"}}`))
	}
	m.deny("backend", "purge the media bucket (STREAM.PURGE.OBJ_WA_MEDIA)", rawReq("$JS.API.STREAM.PURGE.OBJ_WA_MEDIA", ""))

	// Forged events, QRs and commands.
	m.deny("connector", "publish a forged live event (live.wa.2.evt.message)", forged("live.wa.2.evt.message"))
	m.deny("persister", "publish a forged event (wa.2.evt.message)", forged("wa.2.evt.message"))
	m.deny("persister", "publish a forged group event (wa.2.evt.group)", forged("wa.2.evt.group"))
	m.deny("persister", "publish a forged sending event (wa.2.evt.sending)", forged("wa.2.evt.sending"))
	m.deny("persister", "publish a forged receipt (wa.2.evt.receipt)", forged("wa.2.evt.receipt"))
	m.deny("persister", "publish under the campaign subject's prefix (wa.2.evt.campaign.x)", forged("wa.2.evt.campaign.x"))
	m.deny("notifier", "publish a forged event (wa.2.evt.message)", forged("wa.2.evt.message"))
	m.deny("notifier", "publish a forged QR (wa.2.qr)", forged("wa.2.qr"))
	m.deny("backend", "publish a command (wa.2.cmd.send)", forged("wa.2.cmd.send"))
	m.deny("persister", "publish a command (wa.2.cmd.send)", forged("wa.2.cmd.send"))
	m.deny("backend", "publish a forged revocation (zapbus.notifier.revoke)", forged("zapbus.notifier.revoke"))
	m.deny("connector", "publish a forged revocation (zapbus.notifier.revoke)", forged("zapbus.notifier.revoke"))
	m.deny("backend", "relay a command to a connector (zapbus.connector.B.>)", forged("zapbus.connector.B.wa.2.cmd.send"))
	m.deny("persister", "write a lease ($KV.WA_LEASES.m1)", forged("$KV.WA_LEASES.m1"))
	m.deny("notifier", "write a lease ($KV.WA_LEASES.m1)", forged("$KV.WA_LEASES.m1"))
	m.deny("notifier", "dead-letter (zapbus.dlq.WA_EVENTS)", forged("zapbus.dlq.WA_EVENTS"))

	// Destructive ones last, so a weakened nats.conf still shows every row.
	m.deny("backend", "delete the persister's durable consumer", delPersister)
	m.deny("notifier", "purge WA_DLQ", rawReq("$JS.API.STREAM.PURGE.WA_DLQ", ""))
	m.deny("persister", "purge WA_EVENTS", rawReq("$JS.API.STREAM.PURGE.WA_EVENTS", ""))
	m.deny("webhooks", "purge WA_EVENTS", rawReq("$JS.API.STREAM.PURGE.WA_EVENTS", ""))
	m.deny("webhooks", "purge WA_DLQ (erase its dead letters)", rawReq("$JS.API.STREAM.PURGE.WA_DLQ", ""))
	m.deny("webhooks", "delete stream WA_EVENTS", rawReq("$JS.API.STREAM.DELETE.WA_EVENTS", ""))
	m.deny("webhooks", "delete a stored message (STREAM.MSG.DELETE.WA_EVENTS)", rawReq("$JS.API.STREAM.MSG.DELETE.WA_EVENTS", `{"seq":1}`))
	m.deny("persister", "delete stream WA_EVENTS", rawReq("$JS.API.STREAM.DELETE.WA_EVENTS", ""))
	m.deny("connector", "delete stream WA_QR", rawReq("$JS.API.STREAM.DELETE.WA_QR", ""))
	m.deny("gateway", "purge WA_EVENTS", rawReq("$JS.API.STREAM.PURGE.WA_EVENTS", ""))
	m.deny("gateway", "delete stream WA_EVENTS", rawReq("$JS.API.STREAM.DELETE.WA_EVENTS", ""))
	m.deny("gateway", "delete stream KV_WA_SENDS", rawReq("$JS.API.STREAM.DELETE.KV_WA_SENDS", ""))
	m.deny("notifier", "delete the media bucket (STREAM.DELETE.OBJ_WA_MEDIA)", rawReq("$JS.API.STREAM.DELETE.OBJ_WA_MEDIA", ""))
	m.deny("connector", "delete a lease's history (STREAM.PURGE.KV_WA_LEASES)", rawReq("$JS.API.STREAM.PURGE.KV_WA_LEASES", ""))
	m.deny("notifier", "delete a stored message (STREAM.MSG.DELETE.WA_EVENTS)", rawReq("$JS.API.STREAM.MSG.DELETE.WA_EVENTS", `{"seq":1}`))

	// No anonymous or wrong-password access.
	for user, url := range map[string]string{
		"anonymous": "nats://" + e.hostPort,
		"connector": "nats://connector:wrong@" + e.hostPort,
	} {
		nc, err := nats.Connect(url)
		if err == nil {
			nc.Close()
			m.add(user, "connect without the right password", "refused", "connected", false)
			continue
		}
		m.add(user, "connect without the right password", "refused", shorten(err.Error()), true)
	}

	// The legitimate paths above never touched a denied subject.
	for _, b := range []*bus.Bus{conn, conn2, pers, notif, hooks, gw} {
		_ = b.NC.Flush()
	}
	m.allow("all services", "no permissions violation during the jobs above", func(context.Context) error {
		var bad []string
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(strings.ToLower(line), "permissions violation") {
				bad = append(bad, line)
			}
		}
		return expect(len(bad) == 0, "%d violations: %s", len(bad), strings.Join(bad, "\n"))
	})

	// Leave the persister's durable intact (the attacks did not change it).
	m.allow("admin", "persister durable still whole after the attacks", func(ctx context.Context) error {
		c, err := admin.JS.Consumer(ctx, bus.StreamEvents, pcfg.Durable)
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		return expect(info.Config.FilterSubject == event.EventsWildcard, "filter now %q", info.Config.FilterSubject)
	})
}

// fetchOne reads one stored event through an ordered consumer on WA_EVENTS.
func fetchOne(ctx context.Context, b *bus.Bus, cfg jetstream.OrderedConsumerConfig) error {
	cons, err := b.JS.OrderedConsumer(ctx, bus.StreamEvents, cfg)
	if err != nil {
		return err
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		return err
	}
	n := 0
	for range batch.Messages() {
		n++
	}
	return expect(n == 1, "replayed %d events", n)
}
