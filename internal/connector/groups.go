package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/waconv"
)

// Groups (issue #12). Every group event is a full snapshot
// (docs/events.md, group). A session publishes one
//   - when the number joins a group (*events.JoinedGroup, converted by
//     waconv like any published event),
//   - after each change WhatsApp reports (*events.GroupInfo, a delta): the
//     session fetches the group's info and publishes it, before the ack;
//     when the change removed the number (or deleted the group) the info
//     can no longer be fetched, and the last snapshot it published is
//     published again with Left set,
//   - on first sight: the first message of a group the session has not
//     described yet. That fetch runs in the background (a few retries, a
//     bounded number in flight, stopped with the session) and never holds
//     up or fails the message, which is published and acked first.
//
// What was described is kept in memory per session; the persister keeps
// the newest snapshot by (occurred_at, stream sequence), so describing a
// group again after a restart is harmless.

// Bounds of the first-sight fetches of one session.
const (
	groupFetchInFlight = 4
	groupFetchAttempts = 3
)

// groupFetchDelay is the wait before retry n (1-based) of a first-sight
// fetch; a variable so tests could shorten it.
var groupFetchDelay = func(n int) time.Duration { return time.Duration(n) * 2 * time.Second }

// groups is a session's memory of the groups it described.
type groups struct {
	mu       sync.Mutex
	known    map[string]*event.Group // last snapshot published, by group JID
	fetching map[string]bool         // first-sight fetch queued or running
	slots    chan struct{}           // bounds fetches in flight
	wg       sync.WaitGroup          // running fetches

	ctx    context.Context // cancelled when the session's run loop ends
	cancel context.CancelFunc
}

func newGroups() *groups {
	ctx, cancel := context.WithCancel(context.Background())
	return &groups{
		known:    map[string]*event.Group{},
		fetching: map[string]bool{},
		slots:    make(chan struct{}, groupFetchInFlight),
		ctx:      ctx,
		cancel:   cancel,
	}
}

// remember records a published snapshot as the group's last known state.
func (g *groups) remember(gr *event.Group) {
	g.mu.Lock()
	g.known[gr.JID] = gr
	g.mu.Unlock()
}

func (g *groups) last(jid string) *event.Group {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.known[jid]
}

// hasLeft reports whether the last snapshot of jid says the number left.
func (g *groups) hasLeft(jid string) bool {
	last := g.last(jid)
	return last != nil && last.Left
}

// converter is the session's waconv converter, with the client's LID
// store when it is a real whatsmeow client.
func (s *session) converter(cli Client) *waconv.Converter {
	return &waconv.Converter{Mentorado: s.m, LIDs: lidStore(cli), Now: s.d.clock.Now}
}

// lidStore is the client's LID → phone store: whatsmeow's own, nil for
// other clients (the sim).
func lidStore(cli Client) waconv.LIDStore {
	if wc, ok := cli.(*whatsmeow.Client); ok && wc.Store != nil && wc.Store.LIDs != nil {
		return wc.Store.LIDs
	}
	return nil
}

// ownJIDs are the mentorado's own addresses: the paired phone JID and,
// on a real client, its LID.
func (s *session) ownJIDs(cli Client) []types.JID {
	own := []types.JID{s.snapshot().jid}
	if wc, ok := cli.(*whatsmeow.Client); ok && wc.Store != nil {
		own = append(own, wc.Store.GetJID().ToNonAD(), wc.Store.GetLID())
	}
	return own
}

// notInGroup reports the errors whatsmeow returns for a group the number
// is not in (403) or that does not exist (404).
func notInGroup(err error) bool {
	return errors.Is(err, whatsmeow.ErrNotInGroup) || errors.Is(err, whatsmeow.ErrGroupNotFound)
}

// onGroupInfo publishes the snapshot after a group change. It runs on the
// whatsmeow goroutine; true (ack) once the snapshot is stored, false when
// the fetch or the publish failed and WhatsApp should deliver the change
// again.
func (s *session) onGroupInfo(ctx context.Context, cli Client, evt *events.GroupInfo) bool {
	if evt == nil || evt.JID.Server != types.GroupServer {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, s.d.cfg.PublishTimeout)
	defer cancel()
	jid := evt.JID.ToNonAD().String()
	if waconv.LeftGroup(evt, s.ownJIDs(cli)...) {
		return s.publishLeft(ctx, cli, jid, evt.Timestamp)
	}
	if !waconv.SnapshotChanged(evt) && s.groups.last(jid) != nil {
		return true // nothing a group event carries changed
	}
	info, err := cli.GetGroupInfo(ctx, evt.JID)
	if notInGroup(err) {
		// Removed in a change we have not seen (or by our LID, which
		// this client does not know): the group is left.
		return s.publishLeft(ctx, cli, jid, evt.Timestamp)
	}
	if err != nil {
		s.log.Warn().Err(err).Str("group", jid).Msg("fetch group info after a change failed; not acking")
		return false
	}
	return s.publishGroup(ctx, cli, info, false, evt.Timestamp) == nil
}

// publishLeft republishes the last snapshot of jid with Left set. A
// group this session never described is published with what is known:
// its JID and no participants.
func (s *session) publishLeft(ctx context.Context, cli Client, jid string, at time.Time) bool {
	left := &event.Group{JID: jid, Participants: []event.Participant{}}
	if last := s.groups.last(jid); last != nil {
		cp := *last
		left = &cp
	}
	left.Left = true
	env, err := s.converter(cli).GroupEnvelope(left, at)
	if err != nil {
		s.log.Error().Err(err).Str("group", jid).Msg("build left group event; dropped")
		return true
	}
	if err := s.publishEnv(ctx, env); err != nil {
		s.log.Warn().Err(err).Str("id", env.ID).Msg("publish failed; WhatsApp will redeliver")
		return false
	}
	s.groups.remember(left)
	return true
}

// publishGroup publishes a group's snapshot and remembers it.
func (s *session) publishGroup(ctx context.Context, cli Client, info *types.GroupInfo, left bool, at time.Time) error {
	env, g, err := s.converter(cli).GroupSnapshot(ctx, info, left, at)
	if err != nil {
		s.log.Warn().Err(err).Msg("build group event")
		return err
	}
	if err := s.publishEnv(ctx, env); err != nil {
		s.log.Warn().Err(err).Str("id", env.ID).Msg("publish group event failed")
		return err
	}
	s.groups.remember(g)
	return nil
}

// published notes what the session just published: group snapshots
// (JoinedGroup) are remembered, and a message in a group not described
// yet starts its first-sight fetch. Messages from history go through here
// too (groupSeen), so a backfilled group gets its subject.
func (s *session) published(envs []event.Envelope) {
	for _, env := range envs {
		switch env.Type {
		case event.TypeGroup:
			if p, err := env.Payload(); err == nil {
				s.groups.remember(p.(*event.Group))
			}
		case event.TypeMessage:
			// Only the chat is needed: decoding and validating the whole
			// payload just encoded cost ~3 % of the inbound path's CPU.
			var m struct {
				ChatJID string `json:"chat_jid"`
			}
			if err := json.Unmarshal(env.Data, &m); err == nil {
				s.groupSeen(m.ChatJID)
			}
		}
	}
}

// groupSeen starts the first-sight fetch of chat when it is a group the
// session has neither described nor is fetching. It never blocks.
func (s *session) groupSeen(chat string) {
	if !waconv.IsGroupChat(chat) {
		return
	}
	g := s.groups
	g.mu.Lock()
	if g.known[chat] != nil || g.fetching[chat] || g.ctx.Err() != nil {
		g.mu.Unlock()
		return
	}
	g.fetching[chat] = true
	g.wg.Add(1)
	g.mu.Unlock()
	go s.fetchGroup(chat)
}

// fetchGroup is one first-sight fetch: a few attempts with the session's
// current client; given up, the group is fetched again on its next
// message.
func (s *session) fetchGroup(chat string) {
	g := s.groups
	defer g.wg.Done()
	described := false
	defer func() {
		g.mu.Lock()
		delete(g.fetching, chat)
		g.mu.Unlock()
		if !described && g.ctx.Err() == nil {
			s.log.Warn().Str("group", chat).Msg("group info not fetched; retried on its next message")
		}
	}()
	jid, err := types.ParseJID(chat)
	if err != nil {
		return
	}
	select {
	case g.slots <- struct{}{}:
	case <-g.ctx.Done():
		return
	}
	defer func() { <-g.slots }()
	for attempt := 1; attempt <= groupFetchAttempts; attempt++ {
		if attempt > 1 {
			t := time.NewTimer(groupFetchDelay(attempt - 1))
			select {
			case <-t.C:
			case <-g.ctx.Done():
				t.Stop()
				return
			}
		}
		if g.last(chat) != nil {
			described = true // a change or a join described it meanwhile
			return
		}
		err := s.fetchGroupOnce(jid)
		if err == nil {
			described = true
			return
		}
		if notInGroup(err) {
			// Not (or no longer) in it: nothing to describe, and
			// nothing a retry would change.
			s.log.Debug().Str("group", chat).Msg("first sight of a group we are not in")
			described = true
			return
		}
		if g.ctx.Err() != nil {
			return
		}
		s.log.Debug().Err(err).Str("group", chat).Int("attempt", attempt).Msg("fetch group info")
	}
}

func (s *session) fetchGroupOnce(jid types.JID) error {
	cli := s.snapshot().cli
	if cli == nil {
		return errors.New("no client")
	}
	ctx, cancel := context.WithTimeout(s.groups.ctx, s.d.cfg.CommandTimeout)
	defer cancel()
	info, err := cli.GetGroupInfo(ctx, jid)
	if err != nil {
		return err
	}
	if info == nil || info.JID.IsEmpty() {
		return fmt.Errorf("group %s: empty info", jid)
	}
	return s.publishGroup(ctx, cli, info, false, s.d.clock.Now())
}

// stopGroups cancels the first-sight fetches; they end without waiting
// out their retry delays.
func (s *session) stopGroups() { s.groups.cancel() }
