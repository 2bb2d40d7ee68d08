package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/gateway"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/provider/meta"
	"github.com/zapbus/zapbus/internal/provider/meta/metafake"
	"github.com/zapbus/zapbus/internal/provider/zapi"
	"github.com/zapbus/zapbus/internal/provider/zapi/zapifake"
	"github.com/zapbus/zapbus/internal/secretbox"
)

// Scenario "gateway": the provider gateway's inbound path (issue #16,
// internal/gateway, docs/decisions/0021-providers.md). A nats-server
// process with the repo's nats.conf (the gateway connects as the gateway
// user), a fresh database with mentorados configured for Meta and Z-API
// through provider.Configs (credentials sealed with a keyring generated
// in-process), the real Meta and Z-API drivers and the gateway's
// Handler() behind an httptest server on 127.0.0.1.
//
// Each step POSTs prebuilt webhook deliveries over real HTTP from c
// concurrent senders (each its own keep-alive connection), spread over
// the mentorados: Meta deliveries signed with the mentorado's app secret
// (metafake's builders; a batch of 10 is ten InboundText messages of one
// sender merged into one change, as Meta batches), Z-API deliveries
// (zapifake's ReceivedText, one message per callback, as Z-API sends them)
// with the webhook secret in the URL. The gateway answers 200 only after
// JetStream stored every event, so a delivery's latency is the whole
// inbound path: mentorado and account lookups, signature, parsing, the
// settled-message lookup, one PubAck per event, the webhook-health write.
//
// Baseline, in the same run, right before each step and at the same
// concurrency: the very envelopes that step stores (the driver's output,
// encoded), published to WA_EVENTS as the gateway user on its own
// connection (on the subjects of a mentorado that does not exist, so the
// check tells them apart), one delivery's envelopes in order, each waiting
// for its PubAck — what the gateway does for a delivery with nothing else
// around it. A second baseline is the one Postgres write an accepted
// delivery makes (the webhook-health row update), alone. Each step also
// reports the CPU it cost per delivery in this process (gateway, drivers,
// senders; with its CPU profile's shares), in nats-server and in the
// Postgres backends.
//
// Checks (failing the run): every delivery answered 200 with all its
// events stored; WA_EVENTS holds exactly the messages sent and one contact
// event per delivery (each delivery has its own sender), no event and no
// WhatsApp message id twice, every event marked with its provider.
func init() {
	register(Scenario{Name: "gateway", Summary: "provider gateway webhooks (Meta, Z-API) over HTTP: deliveries/s and p99 vs raw JetStream publishes of the same envelopes; all stored once", Run: runGateway})
}

type gwParams struct {
	mentorados int
	deliveries int // per step with 1 message per delivery (batch steps: a quarter)
	conc       []int
	zapi       bool
	profileDir string
}

func runGateway(ctx context.Context, env *Env, args []string) (*Result, error) {
	p := gwParams{mentorados: 8, deliveries: 2000, zapi: true}
	conc := "1,8,32"
	if env.Short {
		p.deliveries = 120
	}
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(env.Stdout)
	fs.IntVar(&p.mentorados, "mentorados", p.mentorados, "mentorados, each configured for Meta and Z-API")
	fs.IntVar(&p.deliveries, "deliveries", p.deliveries, "deliveries per step with one message each (10-message steps send a quarter as many)")
	fs.StringVar(&conc, "concurrency", conc, "concurrent senders per step, comma-separated")
	fs.BoolVar(&p.zapi, "zapi", p.zapi, "also measure Z-API deliveries")
	fs.StringVar(&p.profileDir, "profile-dir", "", "write each step's CPU profile of this process to DIR/<step>.pprof")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var err error
	if p.conc, err = parseRates(conc); err != nil {
		return nil, err
	}
	if p.mentorados < 1 || p.deliveries < 4 {
		return nil, errors.New("want at least one mentorado and 4 deliveries")
	}
	return gatewayRun(ctx, env, p)
}

// gwDelivery is one prebuilt webhook delivery and what it must store.
type gwDelivery struct {
	path   string
	header http.Header
	body   []byte
	pubs   []genPub // the envelopes the gateway publishes for it, encoded
	waIDs  []string
}

// gwRig is the running gateway and what was sent to it.
type gwRig struct {
	env     *Env
	admin   *bus.Bus
	raw     *bus.Bus // the baseline's connection (gateway user)
	srv     *httptest.Server
	configs *provider.Configs
	metaDrv *meta.Driver
	zapiDrv *zapi.Driver
	nums    []*metafake.Number   // per mentorado (index m-1)
	insts   []*zapifake.Instance // per mentorado
	secrets []string             // Z-API webhook secrets per mentorado
	senders atomic.Int64         // each delivery's own sender phone

	// What the deliveries carried (checked against WA_EVENTS).
	mu       sync.Mutex
	waIDs    map[string]bool // "<m>:<wa id>"
	contacts int
	rawPubs  int // baseline publishes (to rawMentorado's subjects)
	rawSeq   atomic.Int64
}

func gatewayRun(ctx context.Context, env *Env, p gwParams) (*Result, error) {
	res := NewResult()
	res.Params["mentorados"] = p.mentorados
	res.Params["deliveries_per_step"] = p.deliveries
	res.Params["batch_deliveries_per_step"] = max(1, p.deliveries/4)
	res.Params["concurrency"] = p.conc
	res.Params["zapi"] = p.zapi
	tmp, err := os.MkdirTemp("", "zapbench-gateway-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	n, err := startNATS(ctx, env.NATSServer, tmp)
	if err != nil {
		return nil, err
	}
	defer n.stop()
	res.Params["nats_server"] = n.version
	d, err := createDB(ctx, env.PostgresDSN, "gateway")
	if err != nil {
		return nil, err
	}
	defer d.drop()
	if err := d.addMentorados(ctx, p.mentorados); err != nil {
		return nil, err
	}
	admin, err := n.openAs(ctx, "admin")
	if err != nil {
		return nil, err
	}
	defer admin.NC.Close()
	gb, err := n.openAs(ctx, "gateway")
	if err != nil {
		return nil, fmt.Errorf("open the bus as the gateway user: %w", err)
	}
	defer gb.NC.Close()
	files, err := gb.MediaStore(ctx)
	if err != nil {
		return nil, err
	}
	line, err := secretbox.Generate()
	if err != nil {
		return nil, err
	}
	keys, err := secretbox.Parse(line)
	if err != nil {
		return nil, err
	}
	mf := metafake.New(nopLogf{})
	defer mf.Close()
	zf := zapifake.New(nil)
	defer zf.Close()
	rig := &gwRig{env: env, admin: admin, configs: provider.NewConfigs(d.db, keys), waIDs: map[string]bool{},
		metaDrv: meta.New(meta.Config{BaseURL: mf.URL(), Log: zerolog.Nop()}), zapiDrv: zapi.New(zapi.Config{BaseURL: zf.URL(), Log: zerolog.Nop()})}
	for m := 1; m <= p.mentorados; m++ {
		pnid := fmt.Sprintf("1065403%08d", m)
		display := fmt.Sprintf("1555078%04d", m)
		num := mf.AddAccount(metafake.Account{PhoneNumberID: pnid, DisplayPhone: display, Token: "EAAG-bench-" + secret()})
		rig.nums = append(rig.nums, num)
		if err := rig.configs.Put(ctx, provider.Account{Mentorado: int64(m), Provider: event.ProviderMeta, Meta: &provider.MetaCredentials{
			PhoneNumberID: pnid, WABAID: num.Account().WABAID, DisplayPhone: display,
			AccessToken: num.Account().Token, AppSecret: "app-secret-" + secret(), VerifyToken: "verify-" + secret()}}); err != nil {
			return nil, fmt.Errorf("configure meta for %d: %w", m, err)
		}
		inst := zf.AddInstance(zapifake.InstanceConfig{Phone: fmt.Sprintf("5511977%06d", m), Connected: true})
		rig.insts = append(rig.insts, inst)
		ws, err := provider.NewWebhookSecret()
		if err != nil {
			return nil, err
		}
		rig.secrets = append(rig.secrets, ws)
		if err := rig.configs.Put(ctx, provider.Account{Mentorado: int64(m), Provider: event.ProviderZAPI, ZAPI: inst.Credentials(ws)}); err != nil {
			return nil, fmt.Errorf("configure zapi for %d: %w", m, err)
		}
	}
	g, err := gateway.New(gateway.Deps{DB: d.db, Bus: gb, Configs: rig.configs, Media: files,
		Drivers: []provider.Driver{rig.metaDrv, rig.zapiDrv}, Log: zerolog.Nop()}, gateway.Config{CampaignPoll: -1})
	if err != nil {
		return nil, err
	}
	// Webhooks are served by Handler alone (Run serves commands).
	rig.srv = httptest.NewServer(g.Handler())
	defer rig.srv.Close()

	// The baseline publishes as the gateway user too, on its own connection.
	if rig.raw, err = n.openAs(ctx, "gateway"); err != nil {
		return nil, err
	}
	defer rig.raw.NC.Close()

	// Warm up both paths (connections, pools, caches); counted in the checks.
	fmt.Fprintf(env.Stdout, "gateway: %d mentorados on Meta and Z-API, senders %v\n", p.mentorados, p.conc)
	for _, leg := range []struct {
		prov  event.Provider
		batch int
	}{{event.ProviderMeta, 1}, {event.ProviderZAPI, 1}} {
		if leg.prov == event.ProviderZAPI && !p.zapi {
			continue
		}
		dels, err := rig.build(ctx, leg.prov, leg.batch, 4*p.mentorados)
		if err != nil {
			return nil, err
		}
		if _, err := rig.publishRaw(ctx, dels, 4); err != nil {
			return nil, err
		}
		if _, err := rig.deliver(ctx, dels, 4); err != nil {
			return nil, err
		}
	}

	// A raw-part baseline for the one write a delivery makes: the
	// webhook-health row update (provider_configs.last_webhook_at), a
	// single-row UPDATE and its commit, round-robin over the mentorados'
	// rows at each concurrency.
	for _, c := range p.conc {
		st, err := concurrently(ctx, p.deliveries, c, func(int) func(int) error {
			return func(i int) error {
				_, err := d.db.Pool.Exec(ctx, `UPDATE provider_configs SET last_webhook_at = now() WHERE mentorado_id = $1 AND provider = 'meta'`, i%p.mentorados+1)
				return err
			}
		})
		if err != nil {
			return nil, fmt.Errorf("postgres baseline: %w", err)
		}
		k := fmt.Sprintf("pg_row_update_c%d", c)
		res.Baselines[k+"_per_s"] = float64(p.deliveries) / st.took.Seconds()
		res.Baselines[k+"_p50_ms"] = percentileMs(st.lat, 50)
		res.Baselines[k+"_p99_ms"] = percentileMs(st.lat, 99)
		fmt.Fprintf(env.Stdout, "  postgres row update, %2d at once: %7.0f/s p50 %6.2f ms p99 %6.2f ms\n", c, res.Baselines[k+"_per_s"], res.Baselines[k+"_p50_ms"], res.Baselines[k+"_p99_ms"])
	}

	pgr := &inboundRig{db: d.db} // for its Postgres backend CPU probe
	type leg struct {
		prov  event.Provider
		batch int
	}
	legs := []leg{{event.ProviderMeta, 1}, {event.ProviderMeta, 10}}
	if p.zapi {
		legs = append(legs, leg{event.ProviderZAPI, 1})
	}
	for _, l := range legs {
		count := p.deliveries
		if l.batch > 1 {
			count = max(1, p.deliveries/4)
		}
		for _, c := range p.conc {
			dels, err := rig.build(ctx, l.prov, l.batch, count)
			if err != nil {
				return nil, err
			}
			key := fmt.Sprintf("%s_b%d_c%d", l.prov, l.batch, c)
			raw, err := rig.publishRaw(ctx, dels, c)
			if err != nil {
				return nil, fmt.Errorf("%s baseline: %w", key, err)
			}
			pg0 := pgr.pgBackendCPU(ctx)
			cpu0 := selfCPU()
			ns0, _ := procStatCPU(n.cmd.Process.Pid)
			var prof *profileBuffer
			if err := startProfile(&prof); err != nil {
				prof = nil
			}
			gw, err := rig.deliver(ctx, dels, c)
			shares := stopProfile(prof, p.profileDir, key)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			ns1, _ := procStatCPU(n.cmd.Process.Pid)
			res.Metrics[key+"_postgres_cpu_ms_per_delivery"] = float64(pgr.pgBackendCPU(ctx).sub(pg0)) / float64(time.Millisecond) / float64(count)
			res.Metrics[key+"_process_cpu_ms_per_delivery"] = float64(selfCPU()-cpu0) / float64(time.Millisecond) / float64(count)
			res.Metrics[key+"_nats_server_cpu_ms_per_delivery"] = float64(ns1-ns0) / float64(time.Millisecond) / float64(count)
			msgs := float64(count * l.batch)
			res.Metrics[key+"_deliveries_per_s"] = float64(count) / gw.took.Seconds()
			res.Metrics[key+"_messages_per_s"] = msgs / gw.took.Seconds()
			res.Metrics[key+"_p50_ms"] = percentileMs(gw.lat, 50)
			res.Metrics[key+"_p99_ms"] = percentileMs(gw.lat, 99)
			bkey := "jetstream_" + key
			res.Baselines[bkey+"_deliveries_per_s"] = float64(count) / raw.took.Seconds()
			res.Baselines[bkey+"_p50_ms"] = percentileMs(raw.lat, 50)
			res.Baselines[bkey+"_p99_ms"] = percentileMs(raw.lat, 99)
			ratio := res.Ratio(key+"_deliveries_per_s", bkey+"_deliveries_per_s")
			res.Ratio(key+"_deliveries_per_s", fmt.Sprintf("pg_row_update_c%d_per_s", c))
			fmt.Fprintf(env.Stdout, "  %-16s %5d deliveries: %7.0f deliveries/s %7.0f messages/s p50 %6.2f ms p99 %6.2f ms | raw publish %7.0f/s p50 %6.2f ms p99 %6.2f ms | ratio %.2f\n",
				key, count, res.Metrics[key+"_deliveries_per_s"], res.Metrics[key+"_messages_per_s"], res.Metrics[key+"_p50_ms"], res.Metrics[key+"_p99_ms"],
				res.Baselines[bkey+"_deliveries_per_s"], res.Baselines[bkey+"_p50_ms"], res.Baselines[bkey+"_p99_ms"], ratio)
			fmt.Fprintf(env.Stdout, "  %-16s per delivery: cpu this process %.2f ms, nats-server %.2f ms, postgres %.2f ms; %s\n", "",
				res.Metrics[key+"_process_cpu_ms_per_delivery"], res.Metrics[key+"_nats_server_cpu_ms_per_delivery"],
				res.Metrics[key+"_postgres_cpu_ms_per_delivery"], fmtShares(shares))
			if len(shares) > 0 {
				res.Notes = append(res.Notes, fmt.Sprintf("%s: %s", key, fmtShares(shares)))
			}
		}
	}

	if err := rig.check(ctx, res); err != nil {
		return nil, err
	}
	res.Notes = append(res.Notes,
		"<provider>_b<messages per delivery>_c<concurrent senders>: deliveries over the wall time of the step; p50/p99 per delivery, from the request to the 200 (every event PubAcked)",
		"every delivery has its own sender, so it also stores one contact event: 2 events per 1-message delivery, 11 per 10-message delivery",
		"jetstream_*: the same step's envelopes (the driver's output, encoded) published to WA_EVENTS as the gateway user (subjects of a mentorado that does not exist), one delivery's envelopes in order, each waiting for its PubAck, at the same concurrency, right before the step",
		"*_process_cpu_ms_per_delivery: CPU of the zapbench process (the gateway, its drivers, the HTTP server and the senders) over the step, per delivery; cpu% shares from its CPU profile (zapbus: gateway and drivers; bench: the senders; runtime: net/http, encoding/json, crypto and the Go runtime when no known caller)",
		"*_postgres_cpu_ms_per_delivery: CPU of the Postgres backends of the benchmark's database over the step (4 statements a delivery: mentorado check, account, settled-message lookup, webhook-health update)",
		"pg_row_update_c*: the single-row UPDATE (and commit) every accepted delivery makes (webhook health), alone, round-robin over the mentorados' rows at that concurrency",
		"the gateway, nats-server, Postgres and the senders share the machine's CPUs")
	return res, nil
}

// rawMentorado is the mentorado id on whose subjects the baseline
// publishes (none exists: nothing reads them).
const rawMentorado = 999_999_999

type nopLogf struct{}

func (nopLogf) Logf(string, ...any) {}

// build makes count deliveries of batch messages each for provider prov,
// spread over the mentorados, each from its own sender, with the
// envelopes the gateway will publish for them (the driver's own output).
func (rig *gwRig) build(ctx context.Context, prov event.Provider, batch, count int) ([]gwDelivery, error) {
	out := make([]gwDelivery, 0, count)
	for i := range count {
		m := i%len(rig.nums) + 1
		k := rig.senders.Add(1)
		from, name := fmt.Sprintf("55119%08d", k), fmt.Sprintf("Cliente %d", k)
		var d gwDelivery
		var drv provider.Driver
		switch prov {
		case event.ProviderMeta:
			acc, err := rig.configs.Account(ctx, int64(m), prov)
			if err != nil {
				return nil, err
			}
			body, err := metaBatch(rig.nums[m-1], from, name, k, batch)
			if err != nil {
				return nil, err
			}
			d = gwDelivery{path: fmt.Sprintf("/providers/meta/%d/webhook", m), body: body,
				header: http.Header{"Content-Type": {"application/json"}, meta.SignatureHeader: {metafake.Sign(acc.Meta.AppSecret, body)}}}
			drv = rig.metaDrv
		case event.ProviderZAPI:
			if batch != 1 {
				return nil, errors.New("z-api sends one message per callback")
			}
			_, body := rig.insts[m-1].ReceivedText(from, name, fmt.Sprintf("oi, aqui é o cliente %d, quero saber o preço", k))
			d = gwDelivery{path: fmt.Sprintf("/providers/zapi/%d/webhook/%s", m, url.PathEscape(rig.secrets[m-1])), body: body,
				header: http.Header{"Content-Type": {"application/json"}}}
			drv = rig.zapiDrv
		default:
			return nil, fmt.Errorf("no deliveries for %s", prov)
		}
		// The envelopes: what the driver makes of the delivery, as the
		// gateway publishes them (provider set). Text messages need no
		// media fetch, so these are the stored bytes.
		acc, err := rig.configs.Account(ctx, int64(m), prov)
		if err != nil {
			return nil, err
		}
		req := httptest.NewRequest(http.MethodPost, d.path, bytes.NewReader(d.body))
		req.Header = d.header.Clone()
		if prov == event.ProviderZAPI {
			req.Header.Set(gateway.HeaderWebhookSecret, rig.secrets[m-1])
		}
		in, err := drv.Webhook(ctx, acc, req, d.body)
		if err != nil {
			return nil, fmt.Errorf("%s driver on its own delivery: %w", prov, err)
		}
		contacts := 0
		for _, e := range in.Events {
			e.Provider = prov
			data, err := e.Encode()
			if err != nil {
				return nil, err
			}
			d.pubs = append(d.pubs, genPub{subject: e.Subject(), msgID: e.ID, data: data})
			switch e.Type {
			case event.TypeMessage:
				pl, err := e.Payload()
				if err != nil {
					return nil, err
				}
				d.waIDs = append(d.waIDs, fmt.Sprintf("%d:%s", m, pl.(*event.Message).WAID))
			case event.TypeContact:
				contacts++
			}
		}
		if len(d.waIDs) != batch || contacts != 1 || len(in.Rejected) > 0 {
			return nil, fmt.Errorf("%s delivery of %d messages: the driver made %d messages, %d contacts, rejected %v", prov, batch, len(d.waIDs), contacts, in.Rejected)
		}
		out = append(out, d)
	}
	return out, nil
}

// metaBatch is one Meta delivery of batch text messages from one sender:
// metafake's InboundText deliveries merged into one change (Meta puts the
// messages of a sender that arrive together in one change's messages
// array, with the sender once in contacts).
func metaBatch(num *metafake.Number, from, name string, k int64, batch int) ([]byte, error) {
	var merged map[string]any
	var msgs []any
	for j := range batch {
		_, body := num.InboundText(from, name, fmt.Sprintf("oi, aqui é o cliente %d, mensagem %d: quero saber o preço", k, j+1))
		var d map[string]any
		if err := json.Unmarshal(body, &d); err != nil {
			return nil, err
		}
		v, err := metaValue(d)
		if err != nil {
			return nil, err
		}
		ms, _ := v["messages"].([]any)
		msgs = append(msgs, ms...)
		if merged == nil {
			merged = d
		}
	}
	v, err := metaValue(merged)
	if err != nil {
		return nil, err
	}
	v["messages"] = msgs
	return json.Marshal(merged)
}

// metaValue is a Meta delivery's first change's value.
func metaValue(d map[string]any) (map[string]any, error) {
	entries, _ := d["entry"].([]any)
	if len(entries) == 0 {
		return nil, errors.New("meta delivery without entry")
	}
	e, _ := entries[0].(map[string]any)
	changes, _ := e["changes"].([]any)
	if len(changes) == 0 {
		return nil, errors.New("meta delivery without changes")
	}
	c, _ := changes[0].(map[string]any)
	v, ok := c["value"].(map[string]any)
	if !ok {
		return nil, errors.New("meta change without value")
	}
	return v, nil
}

type gwStep struct {
	took time.Duration
	lat  []time.Duration
}

// concurrently runs do(worker, i) for i in [0, n) on c workers (each
// taking the next index) and returns the wall time and each call's time.
func concurrently(ctx context.Context, n, c int, setup func(w int) func(i int) error) (gwStep, error) {
	var next atomic.Int64
	var lat latencies
	var wg sync.WaitGroup
	var first error
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	for w := range c {
		do := setup(w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := do(i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
				lat.add(time.Since(t0))
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if first != nil {
		return gwStep{}, first
	}
	if err := ctx.Err(); err != nil {
		return gwStep{}, err
	}
	return gwStep{took: took, lat: lat.snapshot()}, nil
}

// deliver POSTs the deliveries to the gateway from c senders, each with
// its own keep-alive connection, and requires every answer to be 200
// with all the delivery's events stored.
func (rig *gwRig) deliver(ctx context.Context, dels []gwDelivery, c int) (gwStep, error) {
	var clients []*http.Client
	defer func() {
		for _, hc := range clients {
			hc.CloseIdleConnections()
		}
	}()
	var mu sync.Mutex
	step, err := concurrently(ctx, len(dels), c, func(int) func(int) error {
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: time.Minute}
		mu.Lock()
		clients = append(clients, hc)
		mu.Unlock()
		return func(i int) error {
			d := dels[i]
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, rig.srv.URL+d.path, bytes.NewReader(d.body))
			if err != nil {
				return err
			}
			req.Header = d.header.Clone()
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var got struct {
				Stored int `json:"stored"`
			}
			if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &got) != nil || got.Stored != len(d.pubs) {
				return fmt.Errorf("delivery to %s: %d %s (want 200 with %d stored)", strings.SplitN(d.path, "/webhook", 2)[0], resp.StatusCode, bytes.TrimSpace(b), len(d.pubs))
			}
			rig.mu.Lock()
			for _, id := range d.waIDs {
				rig.waIDs[id] = true
			}
			rig.contacts++
			rig.mu.Unlock()
			return nil
		}
	})
	return step, err
}

// publishRaw is the baseline: each delivery's envelopes published in
// order to WA_EVENTS as the gateway user, each waiting for its PubAck,
// from c goroutines on one connection (the gateway's too is one). They go
// to a mentorado that does not exist (rawMentorado), so the check tells
// them apart, and keep their bytes.
func (rig *gwRig) publishRaw(ctx context.Context, dels []gwDelivery, c int) (gwStep, error) {
	run := strconv.FormatInt(rig.rawSeq.Add(1), 10)
	rig.mu.Lock()
	for _, d := range dels {
		rig.rawPubs += len(d.pubs)
	}
	rig.mu.Unlock()
	return concurrently(ctx, len(dels), c, func(int) func(int) error {
		return func(i int) error {
			for _, p := range dels[i].pubs {
				_, rest, _ := strings.Cut(strings.TrimPrefix(p.subject, "wa."), ".")
				msg := &nats.Msg{Subject: fmt.Sprintf("wa.%d.%s", rawMentorado, rest), Data: p.data, Header: nats.Header{}}
				if _, err := rig.raw.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(run+":"+p.msgID)); err != nil {
					return fmt.Errorf("raw publish: %w", err)
				}
			}
			return nil
		}
	})
}

// check reads WA_EVENTS back and compares it with what was delivered.
func (rig *gwRig) check(ctx context.Context, res *Result) error {
	st, err := rig.admin.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	inStream := int(info.State.Msgs)
	rawPrefix := fmt.Sprintf("wa.%d.", rawMentorado)
	rawSeen := 0
	ids := map[string]int{}
	waIDs := map[string]int{}
	types := map[event.Type]int{}
	noProvider, undecodable := 0, 0
	if inStream > 0 {
		cons, err := rig.admin.JS.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return err
		}
		for read := 0; read < inStream; {
			batch, err := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				return err
			}
			got := 0
			for msg := range batch.Messages() {
				got++
				read++
				if strings.HasPrefix(msg.Subject(), rawPrefix) {
					rawSeen++
					continue
				}
				e, _, err := event.Decode(msg.Data())
				if err != nil {
					undecodable++
					continue
				}
				ids[e.ID]++
				types[e.Type]++
				if e.Provider != event.ProviderMeta && e.Provider != event.ProviderZAPI {
					noProvider++
				}
				if e.Type == event.TypeMessage {
					pl, err := e.Payload()
					if err != nil {
						undecodable++
						continue
					}
					waIDs[fmt.Sprintf("%d:%s", e.MentoradoID, pl.(*event.Message).WAID)]++
				}
			}
			if err := batch.Error(); err != nil {
				return fmt.Errorf("read WA_EVENTS: %w", err)
			}
			if got == 0 {
				return fmt.Errorf("read WA_EVENTS: %d of %d events", read, inStream)
			}
		}
	}
	total := inStream - rawSeen
	rig.mu.Lock()
	sent, contacts, rawPubs := len(rig.waIDs), rig.contacts, rig.rawPubs
	missing := 0
	for id := range rig.waIDs {
		if waIDs[id] == 0 {
			missing++
		}
	}
	rig.mu.Unlock()
	dupIDs, dupWA := 0, 0
	for _, c := range ids {
		if c > 1 {
			dupIDs++
		}
	}
	for _, c := range waIDs {
		if c > 1 {
			dupWA++
		}
	}
	res.Metrics["events_stored"] = float64(total)
	res.Metrics["messages_sent"] = float64(sent)
	res.Metrics["contact_events_expected"] = float64(contacts)
	fmt.Fprintf(rig.env.Stdout, "gateway: WA_EVENTS holds %d events (%d messages, %d contacts); sent %d messages in %d deliveries\n",
		total, types[event.TypeMessage], types[event.TypeContact], sent, contacts)
	res.Checks["WA_EVENTS holds every message sent, once"] = missing == 0 && dupWA == 0 && types[event.TypeMessage] == sent && len(waIDs) == sent
	res.Checks["one contact event per delivery, nothing else"] = types[event.TypeContact] == contacts && total == sent+contacts
	res.Checks["no event id stored twice"] = dupIDs == 0 && len(ids) == total
	res.Checks["every event decodes and names its provider"] = undecodable == 0 && noProvider == 0
	res.Checks["every baseline publish stored (apart, on a mentorado that does not exist)"] = rawSeen == rawPubs
	if missing+dupWA+dupIDs+undecodable+noProvider > 0 {
		fmt.Fprintf(rig.env.Stdout, "  missing %d, wa ids twice %d, event ids twice %d, undecodable %d, without provider %d\n", missing, dupWA, dupIDs, undecodable, noProvider)
	}
	return nil
}
