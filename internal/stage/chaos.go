package stage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// ChaosOptions shape a chaos run.
type ChaosOptions struct {
	Mentorados     int           // paired tenants, default 6
	Contacts       int           // fake phones writing to each, default 8
	Rate           float64       // inbound messages per second over all, default 20
	Traffic        time.Duration // how long the phones write, default 3m
	PersisterKills int           // kill -9 of each persister, default 3
	PostgresCut    time.Duration // default 30s
	DuplicateEvery int           // every Nth message is delivered twice, default 10
	Drain          time.Duration // after the traffic: how long everything may take to land, default 3m
	Stall          time.Duration // no progress this long while messages wait: drop every connection once, default 10s
	// UntimedFailover turns the failover check's 2×TTL bound into a
	// reported figure (tests do not assert timings; the command does).
	// The sessions must still all move, within the 4×TTL the run waits.
	UntimedFailover bool
	Out             io.Writer
}

// ShortChaos is the version CI runs (about a minute and a half on two
// cores): fewer tenants, less traffic, a 5 s Postgres cut; every kind of
// fault still happens.
func ShortChaos(out io.Writer) ChaosOptions {
	return ChaosOptions{Mentorados: 3, Contacts: 4, Rate: 8, Traffic: 32 * time.Second,
		PersisterKills: 2, PostgresCut: 5 * time.Second, DuplicateEvery: 7, Drain: 60 * time.Second, Stall: 5 * time.Second, Out: out}
}

func (o *ChaosOptions) defaults() {
	if o.Mentorados == 0 {
		o.Mentorados = 6
	}
	if o.Contacts == 0 {
		o.Contacts = 8
	}
	if o.Rate == 0 {
		o.Rate = 20
	}
	if o.Traffic == 0 {
		o.Traffic = 3 * time.Minute
	}
	if o.PersisterKills == 0 {
		o.PersisterKills = 3
	}
	if o.PostgresCut == 0 {
		o.PostgresCut = 30 * time.Second
	}
	if o.DuplicateEvery == 0 {
		o.DuplicateEvery = 10
	}
	if o.Drain == 0 {
		o.Drain = 3 * time.Minute
	}
	if o.Stall == 0 {
		o.Stall = 10 * time.Second
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
}

// ChaosReport is the outcome: the ledger compared with the tables, and
// every check.
type ChaosReport struct {
	Events     []string // what was done, when
	Tenants    []TenantResult
	Checks     []Check
	Takeover   time.Duration // slowest session move after the connector kill
	Duplicates int           // ledger messages delivered more than once
	// StuckUntilReconnect is how many messages waited, unacknowledged, for
	// their session's next login (see drain): not lost, but late.
	StuckUntilReconnect int
}

// TenantResult compares one mentorado's ledger with its rows.
type TenantResult struct {
	Mentorado   int64
	Account     string
	Sent        int // ledger messages
	Stored      int // of those, rows found
	Missing     int
	Extra       int // inbound rows that are not in the ledger
	WrongBody   int
	WrongStatus int
	Contacts    int // distinct phones that wrote
	Leads       int // leads for those phones
	DupLeads    int // phones with more than one lead
	WrongName   int // contacts whose stored push name is not the latest
	NotAcked    int // ledger messages the fake would still redeliver
	Redelivered int
	Out         int // messages the mentorado sent that a phone got
	OutMissing  int // of those, without a row
	OutNotRead  int // rows whose status is not read (every one was read)
}

// Check is one pass/fail fact.
type Check struct {
	Name   string
	OK     bool
	Detail string
}

// OK reports whether every check passed.
func (r *ChaosReport) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return len(r.Checks) > 0
}

func (r *ChaosReport) check(name string, ok bool, format string, args ...any) {
	r.Checks = append(r.Checks, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
}

// Print writes the ledger comparison and the checks.
func (r *ChaosReport) Print(w io.Writer) {
	fmt.Fprintln(w, "chaos: what happened")
	for _, e := range r.Events {
		fmt.Fprintln(w, "  "+e)
	}
	fmt.Fprintln(w, "chaos: ledger (what the fake phones sent) vs whatsapp_messages, leads, whatsapp_contacts")
	fmt.Fprintf(w, "  %-9s %-14s %5s %6s %7s %5s %8s %10s %9s %5s %8s %9s %9s %11s %4s %8s %8s\n",
		"mentorado", "account", "sent", "stored", "missing", "extra", "bad_body", "bad_status", "contacts", "leads", "dup_lead", "bad_name", "not_acked", "redelivered", "out", "out_miss", "not_read")
	var tot TenantResult
	for _, t := range r.Tenants {
		fmt.Fprintf(w, "  %-9d %-14s %5d %6d %7d %5d %8d %10d %9d %5d %8d %9d %9d %11d %4d %8d %8d\n",
			t.Mentorado, t.Account, t.Sent, t.Stored, t.Missing, t.Extra, t.WrongBody, t.WrongStatus, t.Contacts, t.Leads, t.DupLeads, t.WrongName, t.NotAcked, t.Redelivered, t.Out, t.OutMissing, t.OutNotRead)
		tot.Sent += t.Sent
		tot.Stored += t.Stored
		tot.Missing += t.Missing
		tot.Extra += t.Extra
		tot.WrongBody += t.WrongBody
		tot.WrongStatus += t.WrongStatus
		tot.Contacts += t.Contacts
		tot.Leads += t.Leads
		tot.DupLeads += t.DupLeads
		tot.WrongName += t.WrongName
		tot.NotAcked += t.NotAcked
		tot.Redelivered += t.Redelivered
		tot.Out += t.Out
		tot.OutMissing += t.OutMissing
		tot.OutNotRead += t.OutNotRead
	}
	fmt.Fprintf(w, "  %-9s %-14s %5d %6d %7d %5d %8d %10d %9d %5d %8d %9d %9d %11d %4d %8d %8d\n",
		"total", "", tot.Sent, tot.Stored, tot.Missing, tot.Extra, tot.WrongBody, tot.WrongStatus, tot.Contacts, tot.Leads, tot.DupLeads, tot.WrongName, tot.NotAcked, tot.Redelivered, tot.Out, tot.OutMissing, tot.OutNotRead)
	fmt.Fprintln(w, "chaos: checks")
	for _, c := range r.Checks {
		mark := "PASS"
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s  %s: %s\n", mark, c.Name, c.Detail)
	}
	if r.StuckUntilReconnect > 0 {
		fmt.Fprintf(w, "  NOTE  %d messages arrived while their connector could not store or publish them and waited, unacknowledged, until their session reconnected (WhatsApp redelivers at login only)\n", r.StuckUntilReconnect)
	}
	if r.OK() {
		fmt.Fprintln(w, "chaos: PASS")
	} else {
		fmt.Fprintln(w, "chaos: FAIL")
	}
}

// chaosRun is the state of one run.
type chaosRun struct {
	s      *Stack
	o      ChaosOptions
	fake   Fake
	leases *LeaseHistory
	start  time.Time
	rep    *ChaosReport

	sends, sendErrs atomic.Int64

	mu        sync.Mutex
	events    []string
	receipted map[string]bool // messages the phones sent a read receipt for
}

// receipts: the phones read what the mentorados sent them: a read receipt
// for every message in the ledger's received list, as it appears, until
// ctx ends.
func (c *chaosRun) receipts(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		l, err := c.fake.Ledger(ctx)
		if err != nil {
			continue
		}
		for _, m := range l.Received {
			c.mu.Lock()
			done := c.receipted[m.ID]
			c.mu.Unlock()
			if done {
				continue
			}
			if err := c.fake.Receipt(ctx, m.Account, m.Contact, m.ID, "read"); err == nil {
				c.mu.Lock()
				c.receipted[m.ID] = true
				c.mu.Unlock()
			}
		}
	}
}

func (c *chaosRun) receiptedAll(l Ledger) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range l.Received {
		if !c.receipted[m.ID] {
			return false
		}
	}
	return true
}

func (c *chaosRun) event(format string, args ...any) {
	line := fmt.Sprintf("%6.1fs  ", time.Since(c.start).Seconds()) + fmt.Sprintf(format, args...)
	c.mu.Lock()
	c.events = append(c.events, line)
	c.mu.Unlock()
	fmt.Fprintln(c.o.Out, "chaos: "+line)
}

// RunChaos pairs the mentorados, drives traffic from the fake phones while
// it kills and restarts the parts of the stack, waits for everything to
// land, and compares the fake's ledger with the tables. The error is for a
// run that could not be carried out; failed checks are in the report.
func RunChaos(ctx context.Context, s *Stack, o ChaosOptions) (*ChaosReport, error) {
	o.defaults()
	c := &chaosRun{s: s, o: o, fake: s.FakeClient(), start: time.Now(), rep: &ChaosReport{}, receipted: map[string]bool{}}
	leases, err := s.WatchLeases(ctx)
	if err != nil {
		return nil, err
	}
	defer leases.Close()
	c.leases = leases

	tenants := make([]Mentorado, o.Mentorados)
	for i := range tenants {
		m, err := s.PairMentorado(ctx, fmt.Sprintf("Chaos %d", i+1), fmt.Sprintf("55119%08d", 70000001+i))
		if err != nil {
			return nil, fmt.Errorf("pair mentorado %d: %w", i+1, err)
		}
		tenants[i] = m
	}
	c.event("paired %d mentorados; sessions by connector: %s", len(tenants), ownersSummary(leases.Owners()))

	rctx, stopReceipts := context.WithCancel(ctx)
	defer stopReceipts()
	go c.receipts(rctx)
	trafficCtx, stopTraffic := context.WithCancel(ctx)
	var sent atomic.Int64
	trafficDone := make(chan error, 1)
	go func() { trafficDone <- c.traffic(trafficCtx, tenants, &sent) }()

	faultErr := c.faults(ctx)
	stopTraffic()
	if err := <-trafficDone; err != nil && !errors.Is(err, context.Canceled) {
		return nil, fmt.Errorf("traffic: %w", err)
	}
	c.event("traffic stopped after %d inbound messages and %d sends through the API (%d refused)", sent.Load(), c.sends.Load(), c.sendErrs.Load())
	if faultErr != nil {
		return nil, faultErr
	}
	// Everything restarted is running again: let it all land.
	if err := s.WaitReady(ctx, 2*time.Minute, s.all()...); err != nil {
		return nil, err
	}
	ledger, err := c.drain(ctx, tenants)
	if err != nil {
		return nil, err
	}
	c.event("drained")
	c.rep.Events = c.events
	if err := c.compare(ctx, tenants, ledger); err != nil {
		return c.rep, err
	}
	return c.rep, nil
}

func (s *Stack) all() []*Proc {
	out := append(append([]*Proc{}, s.Connectors...), s.Persisters...)
	return append(out, s.Notifier)
}

func ownersSummary(owners map[string]string) string {
	count := map[string]int{}
	for _, o := range owners {
		count[o]++
	}
	var parts []string
	for o, n := range count {
		parts = append(parts, fmt.Sprintf("%s=%d", o, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// traffic: each tick one fake phone writes to one mentorado; every
// DuplicateEvery-th message is delivered a second time a moment later. A
// phone changes its push name now and then, never within a second of its
// previous message (names are ordered by the message's second).
func (c *chaosRun) traffic(ctx context.Context, tenants []Mentorado, sent *atomic.Int64) error {
	type phone struct {
		name    int
		last    time.Time
		account string
	}
	phones := map[string]*phone{}
	tick := time.NewTicker(time.Duration(float64(time.Second) / c.o.Rate))
	defer tick.Stop()
	end := time.After(c.o.Traffic)
	var wg sync.WaitGroup
	defer wg.Wait()
	failures := 0
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-end:
			return nil
		case <-tick.C:
		}
		t := tenants[rand.IntN(len(tenants))]
		from := fmt.Sprintf("55219%04d%04d", t.ID%10000, 1+rand.IntN(c.o.Contacts))
		if n%4 == 0 {
			// The mentorado answers through the API. A send refused while
			// a connector is down is not in the ledger (the phone never
			// got it); one that reached the phone is, whatever the API said.
			// In the background: a send waits for the connector's answer
			// (up to the notifier's send timeout while one is down).
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.s.Send(context.WithoutCancel(ctx), t, from, fmt.Sprintf("chaos answer %d from %d", n, t.ID), fmt.Sprintf("chaos-%d", n)); err == nil {
					c.sends.Add(1)
				} else {
					c.sendErrs.Add(1)
				}
			}()
			continue
		}
		p := phones[t.Account+from]
		if p == nil {
			p = &phone{name: 1}
			phones[t.Account+from] = p
		}
		if rand.IntN(6) == 0 && time.Since(p.last) > 1100*time.Millisecond {
			p.name++
		}
		p.last = time.Now()
		push := fmt.Sprintf("Lead %s v%d", from[len(from)-4:], p.name)
		id, err := c.fake.Inbound(ctx, t.Account, from, push, fmt.Sprintf("chaos message %d to %d from %s", n, t.ID, from), t.ID)
		if err != nil {
			// Not in the ledger, so not expected in the tables; the fake
			// refuses only when it cannot encrypt (no prekeys yet).
			failures++
			if failures > 20 {
				return fmt.Errorf("the fake refused %d messages, last: %w", failures, err)
			}
			continue
		}
		sent.Add(1)
		if n%c.o.DuplicateEvery == 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(300 * time.Millisecond)
				_ = c.fake.Redeliver(context.WithoutCancel(ctx), id)
			}()
		}
	}
}

// faults runs the fault schedule over the traffic window.
func (c *chaosRun) faults(ctx context.Context) error {
	s, o := c.s, c.o
	slot := o.Traffic / 8
	wait := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
			return nil
		}
	}
	killPersisters := func(round int) error {
		for _, p := range s.Persisters {
			if err := p.Kill(); err != nil {
				return err
			}
			c.event("kill -9 %s (round %d)", p.Name, round)
			if err := wait(time.Second); err != nil {
				return err
			}
			if err := p.Start(); err != nil {
				return err
			}
			c.event("started %s", p.Name)
		}
		return nil
	}
	if err := wait(slot / 2); err != nil {
		return err
	}
	// Persister kills spread over the window: the first round now, the
	// others between the other faults.
	round := 1
	if err := killPersisters(round); err != nil {
		return err
	}
	if err := wait(slot); err != nil {
		return err
	}

	// kill -9 the connector holding the most sessions; its sessions must
	// move to the other within 2× the lease TTL.
	owners := c.leases.Owners()
	count := map[string]int{}
	for _, o := range owners {
		count[o]++
	}
	victim := s.Connectors[0]
	best := -1
	for _, p := range s.Connectors {
		if n := count["stage-"+p.Name]; n > best {
			victim, best = p, n
		}
	}
	killedAt := time.Now()
	if err := victim.Kill(); err != nil {
		return err
	}
	c.event("kill -9 %s (held %d sessions)", victim.Name, best)
	ttl := s.cfg.LeaseTTL
	deadline := time.Now().Add(4 * ttl)
	var moved map[string]time.Duration
	var missing []string
	for {
		moved, missing = Takeover(c.leases.Records(), "stage-"+victim.Name, killedAt)
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		if err := wait(200 * time.Millisecond); err != nil {
			return err
		}
	}
	var slowest time.Duration
	for _, d := range moved {
		slowest = max(slowest, d)
	}
	c.rep.Takeover = slowest
	c.event("%d sessions moved to the other connector, slowest after %s (lease TTL %s); not moved: %v", len(moved), slowest.Round(10*time.Millisecond), ttl, missing)
	c.rep.check("connector failover", len(missing) == 0 && (slowest <= 2*ttl || o.UntimedFailover),
		"%d of %d sessions moved, slowest %s, bound 2×TTL = %s", len(moved), len(moved)+len(missing), slowest.Round(10*time.Millisecond), 2*ttl)
	if err := victim.Start(); err != nil {
		return err
	}
	c.event("started %s again", victim.Name)
	if err := wait(slot); err != nil {
		return err
	}

	for round = 2; round <= o.PersisterKills; round++ {
		if err := killPersisters(round); err != nil {
			return err
		}
		if round == 2 {
			break // the rest after the NATS restart
		}
	}
	if err := wait(slot / 2); err != nil {
		return err
	}

	// Restart NATS (graceful stop, start on the same store).
	if err := s.NATS.Stop(20 * time.Second); err != nil {
		return err
	}
	c.event("nats-server stopped")
	if err := s.NATS.Start(); err != nil {
		return err
	}
	c.event("nats-server started again")
	if err := wait(slot); err != nil {
		return err
	}

	// Cut Postgres for every process.
	s.PG.Cut()
	c.event("postgres cut (every connection closed, new ones refused) for %s", o.PostgresCut)
	if err := wait(o.PostgresCut); err != nil {
		s.PG.Restore()
		return err
	}
	s.PG.Restore()
	c.event("postgres back")
	if err := wait(slot / 2); err != nil {
		return err
	}
	for round = 3; round <= o.PersisterKills; round++ {
		if err := killPersisters(round); err != nil {
			return err
		}
		if err := wait(slot / 2); err != nil {
			return err
		}
	}
	return nil
}

// drain waits until the fake has a receipt for every ledger message (the
// connectors published them: WhatsApp would redeliver anything else) and
// every one is in whatsapp_messages, or Drain passes.
//
// WhatsApp redelivers a message the client never acknowledged only when
// the client logs in again. A message that arrived while the connector
// could not decrypt or publish it (Postgres or NATS down) and whose session
// stayed connected therefore waits for the next reconnect. When progress
// stops with messages still unacknowledged, drain drops every connection
// once (a network blip: the sessions reconnect on their own) and reports
// how many were waiting (ChaosReport.StuckUntilReconnect).
func (c *chaosRun) drain(ctx context.Context, tenants []Mentorado) (Ledger, error) {
	db, err := pgx.Connect(ctx, c.s.DSN)
	if err != nil {
		return Ledger{}, err
	}
	defer db.Close(ctx)
	deadline := time.Now().Add(c.o.Drain)
	lastAcked, lastChange, blipped := -1, time.Now(), false
	for {
		l, err := c.fake.Ledger(ctx)
		if err != nil {
			return l, err
		}
		acked := 0
		for _, m := range l.Sent {
			if m.Acked {
				acked++
			}
		}
		var stored, read int
		if err := db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE direction = 'in'), count(*) FILTER (WHERE direction = 'out' AND status = 'read') FROM whatsapp_messages`).Scan(&stored, &read); err != nil {
			return l, fmt.Errorf("count messages: %w", err)
		}
		if (acked == len(l.Sent) && stored >= len(l.Sent) && c.receiptedAll(l) && read >= len(l.Received)) || time.Now().After(deadline) {
			c.event("ledger: %d inbound messages, %d acknowledged by the connectors, %d inbound rows; %d messages the phones got, %d outbound rows read",
				len(l.Sent), acked, stored, len(l.Received), read)
			return l, nil
		}
		if acked != lastAcked {
			lastAcked, lastChange = acked, time.Now()
		}
		if !blipped && acked < len(l.Sent) && time.Since(lastChange) > c.o.Stall {
			blipped = true
			c.rep.StuckUntilReconnect = len(l.Sent) - acked
			c.event("%d messages unacknowledged for %s while their sessions stay connected: dropping every connection once so WhatsApp redelivers them", len(l.Sent)-acked, c.o.Stall)
			for _, t := range tenants {
				if err := c.fake.Disconnect(ctx, t.Account, "drop"); err != nil {
					c.event("drop %s: %v", t.Account, err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return l, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// compare checks the tables against the ledger.
func (c *chaosRun) compare(ctx context.Context, tenants []Mentorado, l Ledger) error {
	db, err := pgx.Connect(ctx, c.s.DSN)
	if err != nil {
		return err
	}
	defer db.Close(ctx)
	byTenant := map[int64][]LedgerMessage{}
	for _, m := range l.Sent {
		byTenant[m.Mentorado] = append(byTenant[m.Mentorado], m)
	}
	rep := c.rep
	for _, t := range tenants {
		res := TenantResult{Mentorado: t.ID, Account: t.Account}
		type row struct {
			body, status string
		}
		rows := map[string]row{}
		q, err := db.Query(ctx, `SELECT wa_message_id, body, status FROM whatsapp_messages WHERE mentorado_id = $1 AND direction = 'in'`, t.ID)
		if err != nil {
			return fmt.Errorf("read messages: %w", err)
		}
		for q.Next() {
			var id string
			var r row
			if err := q.Scan(&id, &r.body, &r.status); err != nil {
				q.Close()
				return err
			}
			rows[id] = r
		}
		q.Close()
		if err := q.Err(); err != nil {
			return err
		}
		latest := map[string]LedgerMessage{}
		inLedger := map[string]bool{}
		for _, m := range byTenant[t.ID] {
			res.Sent++
			inLedger[m.ID] = true
			if !m.Acked {
				res.NotAcked++
			}
			if m.Deliveries > 1 {
				res.Redelivered++
			}
			if cur, ok := latest[m.Contact]; !ok || !m.At.Before(cur.At) {
				latest[m.Contact] = m
			}
			r, ok := rows[m.ID]
			if !ok {
				res.Missing++
				continue
			}
			res.Stored++
			if r.body != m.Text {
				res.WrongBody++
			}
			// An inbound message's final status is received: nobody read
			// it (the run marks nothing read).
			if r.status != "received" {
				res.WrongStatus++
			}
		}
		for id := range rows {
			if !inLedger[id] {
				res.Extra++
			}
		}
		// What the mentorado sent: every message a phone got is one row,
		// read (the phone sent a read receipt for each).
		outRows := map[string]row{}
		oq, err := db.Query(ctx, `SELECT wa_message_id, body, status FROM whatsapp_messages WHERE mentorado_id = $1 AND direction = 'out'`, t.ID)
		if err != nil {
			return fmt.Errorf("read messages: %w", err)
		}
		for oq.Next() {
			var id string
			var r row
			if err := oq.Scan(&id, &r.body, &r.status); err != nil {
				oq.Close()
				return err
			}
			outRows[id] = r
		}
		oq.Close()
		got := map[string]bool{}
		for _, m := range l.Received {
			if m.Account != t.Account {
				continue
			}
			got[m.ID] = true
			res.Out++
			r, ok := outRows[m.ID]
			switch {
			case !ok:
				res.OutMissing++
			case r.body != m.Text:
				res.WrongBody++
			case r.status != "read":
				res.OutNotRead++
			}
		}
		for id, r := range outRows {
			// A send WhatsApp refused is a failed row the phone never got.
			if !got[id] && r.status != "failed" {
				res.Extra++
			}
		}
		res.Contacts = len(latest)
		for ph, m := range latest {
			var n int
			if err := db.QueryRow(ctx, `SELECT count(*) FROM leads WHERE mentorado_id = $1 AND phone = $2`, t.ID, ph).Scan(&n); err != nil {
				return fmt.Errorf("read leads: %w", err)
			}
			if n > 0 {
				res.Leads++
			}
			if n > 1 {
				res.DupLeads++
			}
			var names []string
			nq, err := db.Query(ctx, `SELECT push_name FROM whatsapp_contacts WHERE mentorado_id = $1 AND phone = $2`, t.ID, ph)
			if err != nil {
				return fmt.Errorf("read contacts: %w", err)
			}
			for nq.Next() {
				var s string
				if err := nq.Scan(&s); err != nil {
					nq.Close()
					return err
				}
				names = append(names, s)
			}
			nq.Close()
			ok := len(names) > 0
			for _, s := range names {
				ok = ok && s == m.PushName
			}
			if !ok {
				res.WrongName++
				fmt.Fprintf(c.o.Out, "chaos: mentorado %d contact %s: stored push names %q, latest sent %q\n", t.ID, ph, names, m.PushName)
			}
		}
		rep.Duplicates += res.Redelivered
		rep.Tenants = append(rep.Tenants, res)
	}
	var sent, missing, extra, bad, notAcked, dupLeads, noLead, wrongName, out, outMissing, outNotRead int
	for _, t := range rep.Tenants {
		out += t.Out
		outMissing += t.OutMissing
		outNotRead += t.OutNotRead
		sent += t.Sent
		missing += t.Missing
		extra += t.Extra
		bad += t.WrongBody + t.WrongStatus
		notAcked += t.NotAcked
		dupLeads += t.DupLeads
		noLead += t.Contacts - t.Leads
		wrongName += t.WrongName
	}
	rep.check("every ledger message stored exactly once", sent > 0 && missing == 0 && extra == 0,
		"%d sent, %d missing, %d rows not in the ledger (one row per (mentorado, WhatsApp id) is the unique key)", sent, missing, extra)
	rep.check("every message the phones got stored once, read", out > 0 && outMissing == 0 && outNotRead == 0,
		"%d sent by the mentorados and received, %d without a row, %d rows not read", out, outMissing, outNotRead)
	rep.check("final status and body", bad == 0, "%d rows with another body or a status other than received", bad)
	rep.check("nothing left for WhatsApp to redeliver", notAcked == 0, "%d ledger messages without the client's receipt", notAcked)
	rep.check("duplicates delivered", rep.Duplicates > 0, "%d ledger messages were delivered more than once (redelivery and the offline queue)", rep.Duplicates)
	rep.check("one lead per contact", dupLeads == 0 && noLead == 0, "%d phones with several leads, %d without one", dupLeads, noLead)
	rep.check("contact names are the latest", wrongName == 0, "%d contacts whose stored push name is not the last one sent", wrongName)
	records := c.leases.Records()
	overlaps := Overlaps(records, c.s.cfg.LeaseTTL)
	// The history must reach the end of the run, or an overlap after the
	// watch stopped would go unseen.
	covered := len(records) > 0 && time.Since(records[len(records)-1].At) < 3*c.s.cfg.LeaseTTL
	detail := fmt.Sprintf("%d lease changes recorded up to the end of the run: %v (watch restarted %d times), %d overlaps",
		len(records), covered, c.leases.Restarts(), len(overlaps))
	for _, ov := range overlaps {
		detail += fmt.Sprintf("; session %s taken by %s at %s while %s renewed at %s", ov.Key, ov.To, ov.Got.Format("15:04:05.000"), ov.From, ov.LastRenew.Format("15:04:05.000"))
	}
	rep.check("no session held by two connectors (lease history)", covered && len(overlaps) == 0, "%s", detail)
	rep.check("no session logged in twice at the fake", l.Replaced == 0, "%d logins replaced a live connection of the same device", l.Replaced)
	return nil
}
