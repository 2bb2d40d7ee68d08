package persister

import (
	"context"
	"sync"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/outbound"
)

// Opt-outs (issue #14): an inbound reply that is one of its mentorado's
// opt-out keywords (outbound.Settings.OptOutKeywords, matched by
// outbound.MatchOptOut) opts its sender out of campaigns: an opt_outs row
// (source keyword) written in the transaction that stores the reply
// (store.OptOutsSQL), once per phone (the first opt-out stays).
//
// Only live direct text replies count: history-sync messages are old
// (someone who wrote "sair" a year ago did not answer a campaign), group
// messages are not addressed to the mentorado, and a sender known only by
// LID (no phone, and no LID → phone mapping yet) is skipped, since opt-outs
// and recipients are phones. A reply is acted on when it is first stored;
// the same message redelivered or replayed does not opt out again.

// optOutKeywordsTTL is how long a mentorado's keywords are cached: a
// settings change takes effect within it.
const optOutKeywordsTTL = 30 * time.Second

type optOutRow struct {
	keyword, waID string
}

// optOutCandidate reports whether message p may opt its sender out.
func optOutCandidate(p *event.Message) bool {
	return p.Direction == event.DirectionIn && p.Kind == event.KindText && p.History == nil &&
		p.Text != "" && !event.IsGroupJID(p.ChatJID)
}

// optOutCache caches mentorados' opt-out keywords.
type optOutCache struct {
	mu sync.Mutex
	m  map[int64]optOutEntry
}

type optOutEntry struct {
	keywords []string
	at       time.Time
}

// optOutKeywords returns the opt-out keywords of the mentorados in evs
// that have candidate replies. A mentorado whose settings cannot be read
// (unreadable stored overrides, Postgres away) gets the defaults for this
// batch, not cached, so a settings problem never holds up its messages.
func (p *Persister) optOutKeywords(ctx context.Context, evs []decoded) map[int64][]string {
	var out map[int64][]string
	now := time.Now()
	for _, d := range evs {
		msg, ok := d.p.(*event.Message)
		if !ok || !optOutCandidate(msg) {
			continue
		}
		m := d.env.MentoradoID
		if _, done := out[m]; done {
			continue
		}
		if out == nil {
			out = map[int64][]string{}
		}
		p.optOuts.mu.Lock()
		e, hit := p.optOuts.m[m]
		p.optOuts.mu.Unlock()
		if hit && now.Sub(e.at) < optOutKeywordsTTL {
			out[m] = e.keywords
			continue
		}
		s, _, err := outbound.LoadSettings(ctx, p.db, m)
		if err != nil {
			p.log.Warn().Err(err).Int64("mentorado", m).Msg("opt-out keywords: settings unreadable; using the defaults for this batch")
			out[m] = outbound.DefaultOptOutKeywords()
			continue
		}
		out[m] = s.OptOutKeywords
		p.optOuts.mu.Lock()
		if p.optOuts.m == nil {
			p.optOuts.m = map[int64]optOutEntry{}
		}
		p.optOuts.m[m] = optOutEntry{keywords: s.OptOutKeywords, at: now}
		p.optOuts.mu.Unlock()
	}
	return out
}
