package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
)

// Scenario "replay": `persister replay` (the binary) over a stream of
// stored events (issue #15). The mix of gen.go is published to a real
// nats-server with the repo's nats.conf; then, on a fresh database:
//
//  1. replay from sequence 1 into empty tables (the write rate), checked
//     against the generator's expectations and, with -compare, against
//     the tables a persister process builds from the durable consumer;
//  2. replay again over tables already current (a no-op: it must change
//     no row, updated_at included), against the raw read rate of the
//     stream through an ordered consumer fetching batches of the same size.
func init() {
	register(Scenario{Name: "replay", Summary: "persister replay: write rate, no-op rate vs raw JetStream read, tables identical", Run: runReplay})
}

func runReplay(ctx context.Context, env *Env, args []string) (*Result, error) {
	events, mentorados, contacts, poison := 1_000_000, 20, 2000, 20
	if env.Short {
		events = 20_000
	}
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(env.Stdout)
	fs.IntVar(&events, "events", events, "events to publish")
	fs.IntVar(&mentorados, "mentorados", mentorados, "mentorados")
	compare := fs.Bool("compare", true, "also build the tables with a persister process and compare")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	res := NewResult()
	res.Params["events"] = events
	res.Params["mentorados"] = mentorados
	res.Params["contacts"] = contacts
	tmp, err := os.MkdirTemp("", "zapbench-replay-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(env.Stdout, "building cmd/persister, generating %d events...\n", events)
	bin, err := buildPersister(ctx, tmp)
	if err != nil {
		return nil, err
	}
	pubs, exp := generate(16, events, mentorados, contacts, poison)
	n, err := startNATS(ctx, env.NATSServer, tmp)
	if err != nil {
		return nil, err
	}
	defer n.stop()
	conn, err := n.openAs(ctx, "connector")
	if err != nil {
		return nil, err
	}
	defer conn.NC.Close()
	js, err := jetstream.New(conn.NC, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	stored, _, err := publishAll(ctx, js, pubs, nil)
	if err != nil {
		return nil, err
	}
	pubs = nil
	res.Params["stored_events"] = stored
	fmt.Fprintf(env.Stdout, "%d events stored in WA_EVENTS\n", stored)

	// Raw read rate: what the persister user's ordered consumer delivers.
	pb, err := n.openAs(ctx, "persister")
	if err != nil {
		return nil, err
	}
	defer pb.NC.Close()
	readRate, err := rawRead(ctx, pb, 500)
	if err != nil {
		return nil, fmt.Errorf("raw read: %w", err)
	}
	res.Baselines["jetstream_read_events_per_s"] = readRate

	d, err := createDB(ctx, env.PostgresDSN, "replay")
	if err != nil {
		return nil, err
	}
	defer d.drop()
	if err := d.addMentorados(ctx, mentorados); err != nil {
		return nil, err
	}
	admin, err := bus.Open(ctx, n.url("admin"), "zapbus-admin", bus.Config{}, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	defer admin.NC.Close()

	replay := func(label string) (float64, error) {
		start := time.Now()
		p, err := startPersister(bin, persisterEnv(n, d), "replay", "--from-seq", "1")
		if err != nil {
			return 0, err
		}
		<-p.done
		wall := time.Since(start)
		out := p.out.String()
		if p.cmd.ProcessState.ExitCode() != 0 {
			return 0, fmt.Errorf("%s replay failed: %s", label, tail(out, 2000))
		}
		m := replaySummary.FindStringSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("%s replay: no summary in %s", label, tail(out, 1000))
		}
		applied, _ := strconv.Atoi(m[1])
		dl, _ := strconv.Atoi(m[2])
		took, err := time.ParseDuration(m[3])
		if err != nil {
			return 0, err
		}
		rate := float64(applied+dl) / took.Seconds()
		fmt.Fprintf(env.Stdout, "%s replay: %d applied, %d dead-lettered in %s (process %s): %.0f events/s\n", label, applied, dl, took, wall.Round(time.Millisecond), rate)
		res.Metrics[label+"_replay_process_s"] = wall.Seconds()
		return rate, nil
	}
	rate, err := replay("write")
	if err != nil {
		return nil, err
	}
	res.Metrics["write_replay_events_per_s"] = rate
	if err := checkTables(ctx, d, admin, exp, res.Checks); err != nil {
		return nil, err
	}
	content, err := tableSums(ctx, d, false)
	if err != nil {
		return nil, err
	}
	full, err := tableSums(ctx, d, true)
	if err != nil {
		return nil, err
	}
	rate, err = replay("noop")
	if err != nil {
		return nil, err
	}
	res.Metrics["noop_replay_events_per_s"] = rate
	res.Ratio("noop_replay_events_per_s", "jetstream_read_events_per_s")
	after, err := tableSums(ctx, d, true)
	if err != nil {
		return nil, err
	}
	res.Checks["no-op replay changes no row (updated_at included)"] = equalSums(full, after, env)

	if *compare {
		d2, err := createDB(ctx, env.PostgresDSN, "replaycmp")
		if err != nil {
			return nil, err
		}
		defer d2.drop()
		if err := d2.addMentorados(ctx, mentorados); err != nil {
			return nil, err
		}
		start := time.Now()
		p, err := startPersister(bin, persisterEnv(n, d2))
		if err != nil {
			return nil, err
		}
		err = waitFor(ctx, 30*time.Minute, func() (bool, error) {
			if p.exited() {
				return false, fmt.Errorf("persister exited: %s", tail(p.out.String(), 2000))
			}
			names, err := consumerNames(ctx, admin.JS)
			if err != nil || len(names) == 0 {
				return false, err
			}
			busy, err := consumersBusy(ctx, admin.JS)
			return !busy, err
		})
		p.stop()
		if err != nil {
			return nil, fmt.Errorf("consumer pass: %w", err)
		}
		res.Metrics["consumer_pass_events_per_s"] = float64(stored) / time.Since(start).Seconds()
		single, err := tableSums(ctx, d2, false)
		if err != nil {
			return nil, err
		}
		res.Checks["replayed tables equal a single consumer pass"] = equalSums(content, single, env)
	}
	res.Notes = append(res.Notes, "replay rates are events (applied + dead-lettered) over the duration `persister replay` reports; "+
		"jetstream_read_events_per_s: an ordered consumer of the persister user fetching batches of 500 over the whole stream, touching each payload")
	return res, nil
}

var replaySummary = regexp.MustCompile(`replay: (\d+) events applied, (\d+) dead-lettered, up to seq \d+, in (\S+)`)

// rawRead reads the whole stream through an ordered consumer in fetches of
// batch (the last one sized to what is pending, as replay does) and returns
// events/s.
func rawRead(ctx context.Context, b *bus.Bus, batch int) (float64, error) {
	info, err := b.StreamInfo(ctx, bus.StreamEvents)
	if err != nil {
		return 0, err
	}
	last := info.State.LastSeq
	cons, err := b.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{event.EventsWildcard}})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	n, bytes, want := 0, 0, batch
	for done := false; !done; {
		msgs, err := cons.Fetch(want, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return 0, err
		}
		for m := range msgs.Messages() {
			n++
			bytes += len(m.Data())
			if md, err := m.Metadata(); err == nil {
				done = done || md.Sequence.Stream >= last || md.NumPending == 0
				want = int(min(uint64(batch), max(md.NumPending, 1)))
			}
		}
		if err := msgs.Error(); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// tableSums returns an md5 per table of the persister's rows. Without full,
// only content (no surrogate ids, no timestamps set by Postgres; a
// message's lead by its phone or LID), so two databases built apart
// compare; with full, every column, to prove a no-op wrote nothing.
func tableSums(ctx context.Context, d *benchDB, full bool) (map[string]string, error) {
	content := map[string]string{
		"whatsapp_messages": `SELECT to_jsonb(t) - 'id' - 'lead_id' - 'created_at' - 'updated_at' ||
			jsonb_build_object('lead', (SELECT coalesce(l.phone, l.lid) FROM leads l WHERE l.id = t.lead_id)) FROM whatsapp_messages t`,
		"leads":                     `SELECT to_jsonb(t) - 'id' - 'created_at' - 'updated_at' FROM leads t`,
		"whatsapp_contacts":         `SELECT to_jsonb(t) - 'id' - 'updated_at' FROM whatsapp_contacts t`,
		"whatsapp_lid_phones":       `SELECT to_jsonb(t) - 'created_at' FROM whatsapp_lid_phones t`,
		"whatsapp_pending_receipts": `SELECT to_jsonb(t) - 'received_at' FROM whatsapp_pending_receipts t`,
		"mentorados":                `SELECT to_jsonb(t) - 'created_at' FROM mentorados t`,
	}
	out := map[string]string{}
	for table, q := range content {
		if full {
			q = `SELECT to_jsonb(t) FROM ` + table + ` t`
		}
		var sum string
		if err := d.db.Pool.QueryRow(ctx, `SELECT coalesce(md5(string_agg(j::text, E'\n' ORDER BY j::text)), '') || ':' || count(*) FROM (`+q+`) AS x(j)`).Scan(&sum); err != nil {
			return nil, fmt.Errorf("checksum %s: %w", table, err)
		}
		out[table] = sum
	}
	return out, nil
}

func equalSums(a, b map[string]string, env *Env) bool {
	ok := true
	for k, v := range a {
		if b[k] != v {
			fmt.Fprintf(env.Stdout, "  table %s differs: %s vs %s\n", k, v, b[k])
			ok = false
		}
	}
	return ok
}
