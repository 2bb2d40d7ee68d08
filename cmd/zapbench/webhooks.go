package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/event"
)

// Scenario "webhooks": webhook delivery by the cmd/webhooks process (issue
// #13). A real nats-server with the repo's nats.conf, the dispatcher as
// the webhooks user, one webhook per mentorado (message events) on a
// local HTTP receiver (127.0.0.1, allowed by ZAPBUS_WEBHOOK_ALLOW_NETS and
// ZAPBUS_WEBHOOK_ALLOW_HTTP, as an operator would for an internal
// receiver). Once every endpoint's consumer exists, N message events are
// published; deliveries/s is N over the time from the first publish to
// the last event's first delivery.
//
// Baselines, to the same receiver in the same run, with the same bodies
// (the encoded envelopes): raw HTTP POSTs sequentially on one keep-alive
// connection, and with one sequential client (own connection) per
// mentorado at once: the concurrency the dispatcher has, since each
// endpoint delivers in order, one request at a time.
//
// Checks (failing the run): every event reached its mentorado's endpoint,
// each always under one webhook-id, and per mentorado in stream order
// (the first delivery of event n+1 after that of event n).
func init() {
	register(Scenario{Name: "webhooks", Summary: "webhook deliveries/s to a local receiver vs raw HTTP POSTs of the same bodies; all delivered, in order", Run: runWebhooks})
}

func runWebhooks(ctx context.Context, env *Env, args []string) (*Result, error) {
	events, mentorados := 20_000, 10
	if env.Short {
		events = 2_000
	}
	fs := flag.NewFlagSet("webhooks", flag.ContinueOnError)
	fs.SetOutput(env.Stdout)
	fs.IntVar(&events, "events", events, "message events to publish (spread over the mentorados)")
	fs.IntVar(&mentorados, "mentorados", mentorados, "mentorados, one webhook each")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if mentorados < 1 || events < mentorados {
		return nil, errors.New("want at least one mentorado and one event per mentorado")
	}
	res := NewResult()
	res.Params["events"] = events
	res.Params["mentorados"] = mentorados
	res.Params["webhooks"] = mentorados
	tmp, err := os.MkdirTemp("", "zapbench-webhooks-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(env.Stdout, "building cmd/webhooks, %d events for %d mentorados...\n", events, mentorados)
	bin, err := buildCommand(ctx, tmp, "webhooks")
	if err != nil {
		return nil, err
	}

	// The events: mentorado m's k-th message says "wh-<m>-<k>".
	perM := events / mentorados
	events = perM * mentorados
	res.Params["events"] = events
	var pubs []genPub
	at := time.Now().UTC()
	for k := 1; k <= perM; k++ {
		for m := 1; m <= mentorados; m++ {
			waID := fmt.Sprintf("WH%02d%07d", m, k)
			e, err := event.New(int64(m), event.MessageEventID(int64(m), waID), at, &event.Message{WAID: waID,
				ChatJID: "5511955556666@s.whatsapp.net", SenderJID: "5511955556666@s.whatsapp.net", Phone: "5511955556666",
				PushName: "Rita", Direction: event.DirectionIn, Kind: event.KindText, Text: fmt.Sprintf("wh-%d-%d", m, k),
				Timestamp: at, Status: event.MessageReceived})
			if err != nil {
				return nil, err
			}
			data, err := e.Encode()
			if err != nil {
				return nil, err
			}
			pubs = append(pubs, genPub{subject: e.Subject(), msgID: e.ID, data: data})
		}
	}

	recv, err := startHookReceiver(mentorados, perM)
	if err != nil {
		return nil, err
	}
	defer recv.close()

	// Baselines first (the receiver is then reset): raw POSTs of the same bodies.
	bodies := make([][][]byte, mentorados) // per mentorado, in order
	for i, p := range pubs {
		bodies[i%mentorados] = append(bodies[i%mentorados], p.data)
	}
	seq, err := rawPosts(ctx, recv.url, bodies, 1)
	if err != nil {
		return nil, fmt.Errorf("raw posts: %w", err)
	}
	res.Baselines["raw_post_sequential_per_s"] = seq
	par, err := rawPosts(ctx, recv.url, bodies, mentorados)
	if err != nil {
		return nil, fmt.Errorf("raw posts: %w", err)
	}
	res.Baselines["raw_post_per_mentorado_per_s"] = par
	fmt.Fprintf(env.Stdout, "raw POSTs: %.0f/s sequential, %.0f/s with %d clients\n", seq, par, mentorados)
	recv.reset()

	n, err := startNATS(ctx, env.NATSServer, tmp)
	if err != nil {
		return nil, err
	}
	defer n.stop()
	d, err := createDB(ctx, env.PostgresDSN, "webhooks")
	if err != nil {
		return nil, err
	}
	defer d.drop()
	if err := d.addMentorados(ctx, mentorados); err != nil {
		return nil, err
	}
	for m := 1; m <= mentorados; m++ {
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		if _, err := d.db.Pool.Exec(ctx, `INSERT INTO webhooks (mentorado_id, url, event_types, secret) VALUES ($1, $2, '{message}', $3)`,
			m, fmt.Sprintf("%s/hooks/%d", recv.url, m), "whsec_"+base64.StdEncoding.EncodeToString(key)); err != nil {
			return nil, err
		}
	}
	admin, err := n.openAs(ctx, "admin")
	if err != nil {
		return nil, err
	}
	defer admin.NC.Close()

	p, err := startPersister(bin, append(os.Environ(), "DATABASE_URL="+d.dsn, "NATS_URL="+n.url("webhooks"),
		"ZAPBUS_NATS_PROVISION=false", "ZAPBUS_HTTP_ADDR=off", "ZAPBUS_LOG_LEVEL=warn", "ZAPBUS_WEBHOOK_NAME=zapbench",
		"ZAPBUS_WEBHOOK_ALLOW_NETS=127.0.0.0/8", "ZAPBUS_WEBHOOK_ALLOW_HTTP=true", "ZAPBUS_WEBHOOK_RECONCILE_INTERVAL=200ms"))
	if err != nil {
		return nil, err
	}
	defer p.stop()
	// Every endpoint's consumer exists before the clock starts.
	err = waitFor(ctx, 60*time.Second, func() (bool, error) {
		if p.exited() {
			return false, errDispatcherExited
		}
		names, err := consumerNames(ctx, admin.JS)
		if err != nil {
			return false, err
		}
		hooks := 0
		for _, nm := range names {
			if strings.HasPrefix(nm, "wh_") {
				hooks++
			}
		}
		return hooks >= mentorados, nil
	})
	if err != nil {
		return nil, fmt.Errorf("webhook consumers: %w: %s", err, tail(p.out.String(), 2000))
	}

	conn, err := n.openAs(ctx, "connector")
	if err != nil {
		return nil, err
	}
	defer conn.NC.Close()
	js, err := jetstream.New(conn.NC, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if _, _, err := publishAll(ctx, js, pubs, nil); err != nil {
		return nil, err
	}
	published := time.Since(start)
	timeout := 2*time.Minute + time.Duration(events)*10*time.Millisecond
	err = waitFor(ctx, timeout, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("dispatcher exited: %s", tail(p.out.String(), 2000))
		}
		return recv.complete(), nil
	})
	took := recv.lastFirst().Sub(start)
	if err != nil {
		return nil, fmt.Errorf("deliveries: %w (%d of %d events arrived)", err, recv.distinct(), events)
	}
	rate := float64(events) / took.Seconds()
	fmt.Fprintf(env.Stdout, "webhooks: %d events delivered in %s (published in %s): %.0f/s\n", events, took.Round(time.Millisecond), published.Round(time.Millisecond), rate)
	res.Metrics["webhook_deliveries_per_s"] = rate
	res.Metrics["webhook_requests"] = float64(recv.requests())
	res.Ratio("webhook_deliveries_per_s", "raw_post_sequential_per_s")
	res.Ratio("webhook_deliveries_per_s", "raw_post_per_mentorado_per_s")
	inOrder, stableIDs, problems := recv.verify()
	res.Checks["every event delivered to its mentorado's endpoint"] = recv.complete()
	res.Checks["per mentorado in stream order"] = inOrder
	res.Checks["one webhook-id per event, across retries"] = stableIDs
	for _, pr := range problems {
		fmt.Fprintf(env.Stdout, "  %s\n", pr)
	}
	res.Notes = append(res.Notes,
		"webhook_deliveries_per_s: events over the time from the first publish to the last event's first delivery (publish included)",
		fmt.Sprintf("raw_post_sequential_per_s: one client, one keep-alive connection, the same %d bodies in order", events),
		fmt.Sprintf("raw_post_per_mentorado_per_s: %d clients at once, one per mentorado with its own connection, each in order: the dispatcher's concurrency (one request in flight per endpoint)", mentorados))
	return res, nil
}

var errDispatcherExited = errors.New("the dispatcher exited")

// buildCommand builds ./cmd/<name> into dir.
func buildCommand(ctx context.Context, dir, name string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/"+name)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/%s: %w\n%s", name, err, out)
	}
	return bin, nil
}

// hookReceiver is the local webhook receiver: it records, per mentorado,
// the order in which events first arrived and each event's webhook-id.
type hookReceiver struct {
	url   string
	srv   *http.Server
	perM  int
	mu    sync.Mutex
	first [][]int // per mentorado (index m-1): event numbers in order of first arrival
	ids   []map[int]string
	bad   []string  // problems seen (a changed webhook-id, an unknown body)
	total int       // requests
	seen  int       // distinct events
	last  time.Time // when the latest first delivery arrived
}

var hookText = regexp.MustCompile(`wh-(\d+)-(\d+)`)

func startHookReceiver(mentorados, perM int) (*hookReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &hookReceiver{url: "http://" + ln.Addr().String(), perM: perM}
	r.first = make([][]int, mentorados)
	r.reset()
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *hookReceiver) close() { _ = r.srv.Close() }

func (r *hookReceiver) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = make([]map[int]string, len(r.first))
	for i := range r.first {
		r.first[i] = r.first[i][:0]
		r.ids[i] = map[int]string{}
	}
	r.bad, r.total, r.seen, r.last = nil, 0, 0, time.Time{}
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	mt := hookText.FindSubmatch(body)
	id := req.Header.Get("webhook-id")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total++
	var m, k int
	if mt != nil {
		m, _ = strconv.Atoi(string(mt[1]))
		k, _ = strconv.Atoi(string(mt[2]))
	}
	if m < 1 || m > len(r.first) || k < 1 || k > r.perM {
		r.bad = append(r.bad, fmt.Sprintf("unknown body %.80q", body))
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if prev, ok := r.ids[m-1][k]; ok {
		if prev != id {
			r.bad = append(r.bad, fmt.Sprintf("event %d/%d delivered as %q and %q", m, k, prev, id))
		}
	} else {
		r.ids[m-1][k] = id
		r.first[m-1] = append(r.first[m-1], k)
		r.seen++
		r.last = time.Now()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *hookReceiver) complete() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen == len(r.first)*r.perM
}

func (r *hookReceiver) distinct() int { r.mu.Lock(); defer r.mu.Unlock(); return r.seen }
func (r *hookReceiver) requests() int { r.mu.Lock(); defer r.mu.Unlock(); return r.total }
func (r *hookReceiver) lastFirst() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// verify reports whether every mentorado's events first arrived in order
// and each kept one webhook-id, with the problems found.
func (r *hookReceiver) verify() (inOrder, stableIDs bool, problems []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	inOrder = true
	for m, ks := range r.first {
		for i, k := range ks {
			if k != i+1 {
				inOrder = false
				problems = append(problems, fmt.Sprintf("mentorado %d: event %d arrived first in place %d", m+1, k, i+1))
				break
			}
		}
	}
	stableIDs = true
	for _, b := range r.bad {
		if strings.Contains(b, "delivered as") {
			stableIDs = false
		}
	}
	return inOrder, stableIDs, append(problems, r.bad...)
}

// rawPosts POSTs each mentorado's bodies in order to the receiver with
// clients concurrent clients (each its own keep-alive connection; one
// client posts every mentorado's bodies in turn) and returns POSTs/s.
func rawPosts(ctx context.Context, base string, bodies [][][]byte, clients int) (float64, error) {
	total := 0
	for _, b := range bodies {
		total += len(b)
	}
	work := make([][]int, clients) // mentorado indexes per client
	for m := range bodies {
		work[m%clients] = append(work[m%clients], m)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}, Timeout: 30 * time.Second}
			defer hc.CloseIdleConnections()
			// One client posting several mentorados interleaves them as
			// the stream holds them; per mentorado the order is kept.
			for k := 0; ; k++ {
				more := false
				for _, m := range work[c] {
					if k >= len(bodies[m]) {
						continue
					}
					more = true
					req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/hooks/%d", base, m+1), bytes.NewReader(bodies[m][k]))
					if err != nil {
						errs <- err
						return
					}
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("webhook-id", fmt.Sprintf("raw_%d_%d", m+1, k))
					resp, err := hc.Do(req)
					if err != nil {
						errs <- err
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode/100 != 2 {
						errs <- fmt.Errorf("status %d", resp.StatusCode)
						return
					}
				}
				if !more {
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(total) / time.Since(start).Seconds(), nil
}
