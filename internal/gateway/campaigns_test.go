package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/outbound"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/provider/meta"
	"github.com/zapbus/zapbus/internal/provider/meta/metafake"
	"github.com/zapbus/zapbus/internal/provider/zapi"
	"github.com/zapbus/zapbus/internal/provider/zapi/zapifake"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

// campaignConfig runs campaigns fast: short polls and, with
// fastPacing, gaps of milliseconds (the operator floor at 0).
func campaignConfig() Config {
	return Config{
		CampaignPoll: 30 * time.Millisecond,
		CampaignIdle: 150 * time.Millisecond,
		SendLimits: outbound.Limits{MaxChatPerMinute: 60, MaxChatBurst: 20, MinBulkGapSeconds: 0,
			MaxDailyCap: 1000, MaxQueueTTL: 3600},
	}
}

// fastPacing turns typing off for mentorado m (the campaign's own pacing
// is set by startCampaign).
func (e *env) fastPacing(m int64) {
	e.t.Helper()
	if err := e.db.Campaigns().SaveSendSettings(context.Background(), m, json.RawMessage(`{"typing":false}`), time.Now()); err != nil {
		e.t.Fatal(err)
	}
}

// startCampaign stores a scheduled text campaign of m to phones, due now,
// with gaps of 10–20 ms.
func (e *env) startCampaign(m int64, phones ...string) int64 {
	return e.startPacedCampaign(m, `{"min_gap_seconds":0.01,"max_gap_seconds":0.02}`, phones...)
}

// startPacedCampaign is startCampaign with the campaign's pacing (JSON).
func (e *env) startPacedCampaign(m int64, pacing string, phones ...string) int64 {
	e.t.Helper()
	in := store.CampaignInput{Name: "promo", State: event.CampaignScheduled,
		Message: store.CampaignMessage{Kind: event.KindText, Text: "oi {{nome}}"},
		Pacing:  json.RawMessage(pacing)}
	for _, p := range phones {
		in.Recipients = append(in.Recipients, store.RecipientInput{Phone: p, Text: "oi " + p})
	}
	c, err := e.db.Campaigns().Create(context.Background(), m, in)
	if err != nil {
		e.t.Fatal(err)
	}
	return c.ID
}

func (e *env) campaignState(m, id int64) event.CampaignState {
	e.t.Helper()
	c, err := e.db.Campaigns().Get(context.Background(), m, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return c.State
}

func (e *env) waitCampaign(m, id int64, want event.CampaignState) {
	e.t.Helper()
	testenv.Eventually(e.t, 30*time.Second, func() bool { return e.campaignState(m, id) == want }, "campaign %d not %s", id, want)
}

func (e *env) recipients(m, id int64) []store.RecipientRow {
	e.t.Helper()
	rs, err := e.db.Campaigns().Recipients(context.Background(), m, id, "", 0, 100)
	if err != nil {
		e.t.Fatal(err)
	}
	return rs
}

// zapiCampaignEnv is a gateway on cfg whose mentorado 1 runs on a
// connected zapifake instance, typing off; newDrv makes another driver on
// the same fake (for a second gateway).
func zapiCampaignEnv(t *testing.T, cfg Config) (e *env, fake *zapifake.Server, newDrv func() provider.Driver) {
	fake = zapifake.New(t)
	inst := fake.AddInstance(zapifake.InstanceConfig{Connected: true})
	newDrv = func() provider.Driver {
		return zapi.New(zapi.Config{BaseURL: fake.URL(), MediaHTTP: http.DefaultClient, Backoff: time.Millisecond})
	}
	e = newEnv(t, newDrv(), cfg)
	e.configure(1, provider.Account{Provider: event.ProviderZAPI, ZAPI: inst.Credentials("s3cret-hook")})
	e.fastPacing(1)
	return e, fake, newDrv
}

// phoneSeries is n phones: prefix followed by 00, 01, …
func phoneSeries(prefix string, n int) []string {
	phones := make([]string, n)
	for i := range phones {
		phones[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return phones
}

// TestCampaignZAPI: a zapi mentorado's campaign is sent through the real
// driver to zapifake, one message (one Z-API id) per recipient; each
// recipient keeps Z-API's id, its message event carries the campaign,
// and the campaign completes; the idle worker then lets its lock go.
func TestCampaignZAPI(t *testing.T) {
	e, fake, _ := zapiCampaignEnv(t, campaignConfig())
	phones := []string{"5511911110001", "5511911110002", "5511911110003", "5511911110004"}
	id := e.startCampaign(1, phones...)
	e.waitCampaign(1, id, event.CampaignCompleted)

	sent := fake.Sent()
	if len(sent) != len(phones) {
		t.Fatalf("Z-API got %d sends, want %d", len(sent), len(phones))
	}
	byPhone := map[string]string{}
	for _, s := range sent {
		if _, dup := byPhone[s.Phone]; dup {
			t.Fatalf("%s sent twice", s.Phone)
		}
		byPhone[s.Phone] = s.MessageID
	}
	msgs := map[string]event.Message{}
	for _, ev := range e.events() {
		if ev.Type != event.TypeMessage {
			continue
		}
		if ev.Provider != event.ProviderZAPI {
			t.Fatalf("event without provider: %+v", ev)
		}
		var m event.Message
		_ = json.Unmarshal(ev.Data, &m)
		msgs[m.WAID] = m
	}
	for _, r := range e.recipients(1, id) {
		if r.State != store.RecipientSent || r.WAMessageID == "" || r.WAMessageID != byPhone[r.Phone] {
			t.Fatalf("recipient %s: %s id %q, Z-API answered %q", r.Phone, r.State, r.WAMessageID, byPhone[r.Phone])
		}
		if m := msgs[r.WAMessageID]; m.CampaignID != id || m.ChatJID != r.Phone+"@s.whatsapp.net" || m.Text != "oi "+r.Phone {
			t.Fatalf("message event of %s: %+v", r.Phone, m)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return len(e.gw.campaigns.mentorados()) == 0 }, "idle worker still running")
	if !e.lockFree(1) {
		t.Fatal("idle worker's lock not released")
	}
}

// lockFree reports whether another session can take mentorado m's
// campaign lock (and releases it at once).
func (e *env) lockFree(m int64) bool {
	e.t.Helper()
	ctx := context.Background()
	locks, err := e.db.OpenCampaignLocks(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	defer locks.Close(ctx)
	ok, err := locks.TryLock(ctx, m)
	if err != nil {
		e.t.Fatal(err)
	}
	return ok
}

// TestCampaignMetaWindow: a Meta campaign sends to the recipients who
// wrote in the last 24 hours and fails the others with outside_window
// (Meta's rule: free-form messages only inside the window), without
// pausing bulk sending; the campaign completes.
func TestCampaignMetaWindow(t *testing.T) {
	fake := metafake.New(t)
	fake.AddAccount(metafake.Account{PhoneNumberID: "106540352242922", DisplayPhone: "15550783881", Token: "EAAG-test"})
	drv := meta.New(meta.Config{BaseURL: fake.URL(), Backoff: func(int) time.Duration { return time.Millisecond }})
	e := newEnv(t, drv, campaignConfig())
	e.configure(1, provider.Account{Provider: event.ProviderMeta, Meta: &provider.MetaCredentials{
		PhoneNumberID: "106540352242922", WABAID: "102290129340398", DisplayPhone: "15550783881",
		AccessToken: "EAAG-test", AppSecret: "app-secret-1", VerifyToken: "verify-1",
	}})
	e.fastPacing(1)
	ctx := context.Background()
	inside := []string{"5511922220001", "5511922220003"}
	for i, p := range inside {
		if _, err := e.db.Pool.Exec(ctx, `INSERT INTO whatsapp_messages (mentorado_id, wa_message_id, chat_jid, sender_jid, direction, kind, status, status_rank, sent_at)
			VALUES (1, $1, $2, $2, 'in', 'text', 'received', 1, now() - interval '1 hour')`, fmt.Sprintf("wamid.in%d", i), p+"@s.whatsapp.net"); err != nil {
			t.Fatal(err)
		}
	}
	// Outside: never wrote, or wrote two days ago. More of them than
	// pause_after_errors (5): a window refusal is not a send error.
	outside := []string{"5511922220002", "5511922220004", "5511922220005", "5511922220006", "5511922220007", "5511922220008"}
	if _, err := e.db.Pool.Exec(ctx, `INSERT INTO whatsapp_messages (mentorado_id, wa_message_id, chat_jid, sender_jid, direction, kind, status, status_rank, sent_at)
		VALUES (1, 'wamid.old', '5511922220002@s.whatsapp.net', '5511922220002@s.whatsapp.net', 'in', 'text', 'received', 1, now() - interval '48 hours')`); err != nil {
		t.Fatal(err)
	}
	id := e.startCampaign(1, append(append([]string{}, inside...), outside...)...)
	e.waitCampaign(1, id, event.CampaignCompleted)

	sent := fake.Sent()
	got := map[string]string{}
	for _, s := range sent {
		got[s.To] = s.WAID
	}
	if len(sent) != len(inside) || got[inside[0]] == "" || got[inside[1]] == "" {
		t.Fatalf("Graph API got %+v, want one message to each of %v", sent, inside)
	}
	for _, r := range e.recipients(1, id) {
		switch {
		case got[r.Phone] != "":
			if r.State != store.RecipientSent || r.WAMessageID != got[r.Phone] {
				t.Fatalf("recipient %s inside the window: %s %q, want sent as %s", r.Phone, r.State, r.WAMessageID, got[r.Phone])
			}
		default:
			if r.State != store.RecipientFailed || r.Reason != event.CodeOutsideWindow {
				t.Fatalf("recipient %s outside the window: %s %q, want failed outside_window", r.Phone, r.State, r.Reason)
			}
		}
	}
	row, err := e.db.SendSettings(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if row.PausedAt != nil {
		t.Fatal("window refusals paused bulk sending")
	}
}

// TestCampaignTwoGateways: two gateways on one database and bus, a zapi
// mentorado's campaign: one gateway at a time runs the worker (the lock),
// the first is stopped mid-campaign and the second finishes it, and every
// recipient is sent exactly once at Z-API.
func TestCampaignTwoGateways(t *testing.T) {
	cfg := campaignConfig()
	e, fake, newDrv := zapiCampaignEnv(t, cfg)
	g2, stop2 := e.another(newDrv(), cfg)
	defer stop2()
	// Gaps of about 100 ms, so the campaign is still running when the
	// first gateway stops.
	phones := phoneSeries("55119333300", 12)
	id := e.startPacedCampaign(1, `{"min_gap_seconds":0.08,"max_gap_seconds":0.12}`, phones...)
	gws := []*Gateway{e.gw, g2}
	holder := -1
	testenv.Eventually(t, 20*time.Second, func() bool {
		n := 0
		for i, g := range gws {
			if len(g.campaigns.mentorados()) > 0 {
				holder = i
				n++
			}
		}
		if n > 1 {
			t.Fatal("both gateways run mentorado 1's worker")
		}
		return n == 1 && len(fake.Sent()) >= 3
	}, "no gateway sending")
	// Stop the one sending; the other takes the lock and finishes.
	if holder == 0 {
		e.cancel()
		<-e.done
	} else {
		stop2()
	}
	atStop := len(fake.Sent())
	if atStop >= len(phones) {
		t.Fatalf("the first gateway sent the whole campaign before it stopped")
	}
	e.waitCampaign(1, id, event.CampaignCompleted)
	count := map[string]int{}
	for _, s := range fake.Sent() {
		count[s.Phone]++
	}
	for _, p := range phones {
		if count[p] != 1 {
			t.Fatalf("%s sent %d times (all: %v)", p, count[p], count)
		}
	}
	if len(count) != len(phones) {
		t.Fatalf("sent to %v", count)
	}
}

// another runs a second gateway with driver d on e's database and bus;
// stop stops it (idempotent).
func (e *env) another(d provider.Driver, cfg Config) (*Gateway, func()) {
	e.t.Helper()
	ms, err := e.bus.MediaStore(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	g, err := New(Deps{DB: e.db, Bus: e.bus, Configs: e.configs, Media: ms, Drivers: []provider.Driver{d}, Log: testenv.Logger(e.t)}, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("run: %v", err)
		}
	}
	e.t.Cleanup(stop)
	return g, stop
}

// TestCampaignProviderSwitchStopsWorker: a mentorado switched to
// whatsapp_web mid-campaign loses its gateway worker (and the lock goes),
// and the campaign is left for the connector, still running.
func TestCampaignProviderSwitchStopsWorker(t *testing.T) {
	cfg := campaignConfig()
	cfg.CampaignIdle = time.Hour // only the switch may stop it
	e, fake, _ := zapiCampaignEnv(t, cfg)
	ctx := context.Background()
	// Gaps of 0.3–0.5 s: the campaign would take 12 s or more, and the
	// switch is seen within a poll (30 ms).
	phones := phoneSeries("55119444400", 40)
	id := e.startPacedCampaign(1, `{"min_gap_seconds":0.3,"max_gap_seconds":0.5}`, phones...)
	testenv.Eventually(t, 20*time.Second, func() bool { return len(fake.Sent()) >= 1 }, "no send")
	if got := e.gw.campaigns.mentorados(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("workers %v, want mentorado 1's", got)
	}
	if _, err := e.db.Pool.Exec(ctx, `INSERT INTO provider_configs (mentorado_id, provider) VALUES (1, 'whatsapp_web') ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE mentorados SET active_provider = 'whatsapp_web' WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return len(e.gw.campaigns.mentorados()) == 0 }, "worker still running after the switch")
	if !e.lockFree(1) {
		t.Fatal("lock still held after the switch")
	}
	n := len(fake.Sent())
	if n >= len(phones) {
		t.Fatalf("the whole campaign went out (%d) before the switch took effect", n)
	}
	if st := e.campaignState(1, id); st != event.CampaignRunning {
		t.Fatalf("campaign %s, want running (the connector's now)", st)
	}
	// Nothing more goes out through Z-API.
	time.Sleep(5 * cfg.CampaignPoll)
	if got := len(fake.Sent()); got != n {
		t.Fatalf("Z-API got %d sends after the switch (had %d)", got, n)
	}
}

// lockHolder is the backend pid holding mentorado m's campaign lock (0:
// none).
func (e *env) lockHolder(m int64) int {
	e.t.Helper()
	var pid int
	err := e.db.Pool.QueryRow(context.Background(), `SELECT coalesce((SELECT pid FROM pg_locks WHERE locktype = 'advisory'
		AND classid = $1 AND objid = $2 AND objsubid = 2 AND granted), 0)`, store.GatewayCampaignLockClass, m).Scan(&pid)
	if err != nil {
		e.t.Fatal(err)
	}
	return pid
}

func (r *campaignRunner) startCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.starts
}

// TestCampaignLockConnectionLost: when the connection holding the lock
// dies, the worker stops (its lock is gone); the gateway reconnects,
// takes the lock again with a new worker, and the campaign completes with
// every recipient sent once. A disabled mentorado's worker stops.
func TestCampaignLockConnectionLost(t *testing.T) {
	cfg := campaignConfig()
	cfg.CampaignIdle = time.Hour
	e, fake, _ := zapiCampaignEnv(t, cfg)
	ctx := context.Background()
	phones := phoneSeries("55119555500", 10)
	id := e.startPacedCampaign(1, `{"min_gap_seconds":0.08,"max_gap_seconds":0.12}`, phones...)
	testenv.Eventually(t, 20*time.Second, func() bool { return len(fake.Sent()) >= 2 }, "no sends")
	first := e.lockHolder(1)
	if first == 0 || e.gw.campaigns.startCount() != 1 {
		t.Fatalf("lock holder %d, %d workers started", first, e.gw.campaigns.startCount())
	}
	if _, err := e.db.Pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, first); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return e.gw.campaigns.startCount() == 2 }, "no new worker after the lock connection died")
	if pid := e.lockHolder(1); pid == 0 || pid == first {
		t.Fatalf("lock held by %d after the connection %d died", pid, first)
	}
	e.waitCampaign(1, id, event.CampaignCompleted)
	count := map[string]int{}
	for _, s := range fake.Sent() {
		count[s.Phone]++
	}
	for _, p := range phones {
		if count[p] != 1 {
			t.Fatalf("%s sent %d times", p, count[p])
		}
	}

	// Disabled: the worker (kept by a second campaign) stops.
	c2 := e.startCampaign(1, "5511955559999")
	e.waitCampaign(1, c2, event.CampaignCompleted)
	if _, err := e.db.Campaigns().Create(ctx, 1, store.CampaignInput{Name: "later", State: event.CampaignScheduled,
		Message: store.CampaignMessage{Kind: event.KindText, Text: "oi"}, Pacing: json.RawMessage(`{"min_gap_seconds":3600,"max_gap_seconds":3600}`),
		Recipients: []store.RecipientInput{{Phone: "5511955558888", Text: "oi"}, {Phone: "5511955557777", Text: "oi"}}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return len(e.gw.campaigns.mentorados()) == 1 }, "no worker")
	if _, err := e.db.Pool.Exec(ctx, `UPDATE mentorados SET disabled_at = now() WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return len(e.gw.campaigns.mentorados()) == 0 }, "disabled mentorado's worker still running")
	if !e.lockFree(1) {
		t.Fatal("disabled mentorado's lock still held")
	}
}

// TestCampaignResendAfterCrash: a gateway that sent a recipient's message
// and died before marking it sent leaves the recipient in sending with
// the id the worker committed; the next worker's send is answered from
// WA_SENDS with the first message (Z-API gets it once) and the recipient
// ends sent with Z-API's id.
func TestCampaignResendAfterCrash(t *testing.T) {
	fake := zapifake.New(t)
	inst := fake.AddInstance(zapifake.InstanceConfig{Connected: true})
	drv := zapi.New(zapi.Config{BaseURL: fake.URL(), MediaHTTP: http.DefaultClient, Backoff: time.Millisecond})
	e := newEnv(t, drv, campaignConfig())
	e.configure(1, provider.Account{Provider: event.ProviderZAPI, ZAPI: inst.Credentials("s3cret-hook")})
	e.fastPacing(1)
	ctx := context.Background()
	c, err := e.db.Campaigns().Create(ctx, 1, store.CampaignInput{Name: "crash", State: event.CampaignDraft,
		Message: store.CampaignMessage{Kind: event.KindText, Text: "oi"}, Pacing: json.RawMessage(`{"min_gap_seconds":0.01,"max_gap_seconds":0.02}`),
		Recipients: []store.RecipientInput{{Phone: "5511966660001", Text: "oi"}}})
	if err != nil {
		t.Fatal(err)
	}
	// The gateway that died: it committed 3EB0CRASHED, sent, and stopped
	// (the campaign is a draft meanwhile, so no worker runs yet).
	if _, err := e.db.Pool.Exec(ctx, `UPDATE campaign_recipients SET state = 'sending', wa_message_id = '3EB0CRASHED',
		jid = '5511966660001@s.whatsapp.net', attempts = 1 WHERE campaign_id = $1`, c.ID); err != nil {
		t.Fatal(err)
	}
	first, err := campaignSender{g: e.gw, m: 1, p: event.ProviderZAPI}.Send(ctx,
		event.SendRequest{Chat: "5511966660001@s.whatsapp.net", Kind: event.KindText, Text: "oi"}, "3EB0CRASHED", outbound.SendMeta{CampaignID: c.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE campaigns SET state = 'running', started_at = now() WHERE id = $1`, c.ID); err != nil {
		t.Fatal(err)
	}
	e.waitCampaign(1, c.ID, event.CampaignCompleted)
	if n := len(fake.Sent()); n != 1 {
		t.Fatalf("Z-API got %d sends, want the first only", n)
	}
	rs := e.recipients(1, c.ID)
	if rs[0].State != store.RecipientSent || rs[0].WAMessageID != first.WAID || first.WAID != fake.Sent()[0].MessageID {
		t.Fatalf("recipient %+v, first send %s", rs[0], first.WAID)
	}
}
