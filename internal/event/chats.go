package event

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Chats (issue #12). A chat is where messages are: a direct chat with one
// person, addressed by phone JID (<digits>@s.whatsapp.net) or, while only
// the person's LID is known, by LID (<digits>@lid); or a group
// (<id>@g.us). The persister keys threads by chat, so a group's messages
// are never mixed into a participant's direct thread, and a LID chat
// becomes the phone chat when the mapping is learned.

// ChatKind tells a direct chat from a group.
type ChatKind string

// Chat kinds.
const (
	ChatDirect ChatKind = "direct"
	ChatGroup  ChatKind = "group"
)

// JID servers zapbus addresses chats on.
const (
	ServerPhone = "s.whatsapp.net"
	ServerLID   = "lid"
	ServerGroup = "g.us"
)

// KindOfChat returns the kind of a chat JID, "" when jid is not a chat
// zapbus can address (no user part, a device part, an unknown server).
func KindOfChat(jid string) ChatKind {
	user, server, ok := strings.Cut(jid, "@")
	if !ok || user == "" || strings.ContainsAny(user, ":.") {
		return ""
	}
	switch server {
	case ServerPhone, ServerLID:
		if !digits(user) {
			return ""
		}
		if server == ServerPhone && checkPhone("", user) != nil {
			return ""
		}
		return ChatDirect
	case ServerGroup:
		// Old groups are <creator phone>-<unix time>, new ones a long number.
		for _, part := range strings.Split(user, "-") {
			if !digits(part) {
				return ""
			}
		}
		return ChatGroup
	}
	return ""
}

func digits(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// IsGroupJID reports whether jid is a group chat.
func IsGroupJID(jid string) bool { return strings.HasSuffix(jid, "@"+ServerGroup) }

// History marks a message imported from the phone's history sync rather
// than seen live. Same message contract, same event id as the live message
// (MessageEventID), so a message seen both ways is stored once.
type History struct {
	// Sync is WhatsApp's sync type: initial_bootstrap, recent, full,
	// on_demand (or another name a newer WhatsApp sends).
	Sync string `json:"sync"`
	// SyncedAt is when the phone sent the history (the timestamp of the
	// notification that carried it): the persister's "recent" lead rule
	// counts days back from here, so a replay decides the same.
	SyncedAt time.Time `json:"synced_at"`
}

// Validate checks a history marker.
func (h *History) Validate() error {
	switch {
	case h.Sync == "":
		return missing("data.history.sync")
	case h.SyncedAt.IsZero():
		return missing("data.history.synced_at")
	}
	return nil
}

// Participant is one member of a group.
type Participant struct {
	JID   string `json:"jid"`             // as the group lists it: phone JID or LID
	Phone string `json:"phone,omitempty"` // E.164 digits, when known
	LID   string `json:"lid,omitempty"`   // "<n>@lid", when known
	Admin bool   `json:"admin,omitempty"` // admin or super admin
}

// MaxParticipants bounds a group event's participant list (WhatsApp groups
// hold at most 1,024 members; communities' announcement groups more).
const MaxParticipants = 5000

// Group is the current state of a group the mentorado's number is in (or
// has left): its subject and its participants. Every group event is a full
// snapshot, published when the connector first meets the group (fetching
// its info) and after each change WhatsApp reports (subject, participants
// joining, leaving, promoted); the newest by (occurred_at, stream sequence)
// wins.
type Group struct {
	JID          string        `json:"jid"`
	Subject      string        `json:"subject,omitempty"`
	Topic        string        `json:"topic,omitempty"` // the group description
	Participants []Participant `json:"participants"`
	// Left is set when the mentorado's number left or was removed: the
	// group stays in the history, read-only.
	Left bool `json:"left,omitempty"`
}

func (*Group) EventType() Type { return TypeGroup }

func (g *Group) Validate() error {
	switch {
	case g.JID == "":
		return missing("data.jid")
	case KindOfChat(g.JID) != ChatGroup:
		return invalid("data.jid", fmt.Sprintf("%q is not a group JID", g.JID))
	case len(g.Participants) > MaxParticipants:
		return invalid("data.participants", "too many")
	}
	for i, p := range g.Participants {
		if p.JID == "" {
			return missing(fmt.Sprintf("data.participants[%d].jid", i))
		}
		if err := checkPhone(fmt.Sprintf("data.participants[%d].phone", i), p.Phone); err != nil {
			return err
		}
	}
	return nil
}

// HistoryProgress reports one chunk of the phone's history sync stored on
// the stream: the notifier shows it instead of each historic message.
type HistoryProgress struct {
	Sync          string    `json:"sync"`               // as History.Sync
	Chunk         int       `json:"chunk"`              // WhatsApp's chunk order, from 0
	Progress      int       `json:"progress,omitempty"` // percent WhatsApp reports for the whole sync, 0–100
	Conversations int       `json:"conversations"`      // chats in this chunk
	Messages      int       `json:"messages"`           // message events published from this chunk
	Skipped       int       `json:"skipped,omitempty"`  // historic messages not recorded (protocol, unsupported)
	Failed        bool      `json:"failed,omitempty"`   // the chunk could not be fetched and never will be
	Reason        string    `json:"reason,omitempty"`   // failed: why
	SyncedAt      time.Time `json:"synced_at"`          // as History.SyncedAt
}

func (*HistoryProgress) EventType() Type { return TypeHistory }

func (h *HistoryProgress) Validate() error {
	switch {
	case h.Sync == "":
		return missing("data.sync")
	case h.Chunk < 0 || h.Conversations < 0 || h.Messages < 0 || h.Skipped < 0:
		return invalid("data", "negative count")
	case h.Progress < 0 || h.Progress > 100:
		return invalid("data.progress", "want 0 to 100")
	case h.SyncedAt.IsZero():
		return missing("data.synced_at")
	case h.Failed && h.Reason == "":
		return missing("data.reason")
	}
	return nil
}

// LeadChange says what happened to a lead.
type LeadChange string

// Lead changes.
const (
	// LeadCreated: a new number (or LID) wrote in and the persister created
	// its lead.
	LeadCreated LeadChange = "created"
	// LeadRenamed: the lead took a better name (NameSource says from
	// where). Leads named in the CRM are never renamed.
	LeadRenamed LeadChange = "renamed"
	// LeadPhone: a lead known only by LID learned its phone number; same id.
	LeadPhone LeadChange = "phone"
	// LeadMerged: a LID-only lead turned out to be the same person as the
	// phone lead LeadID; it was folded into it (its messages moved) and
	// deleted. MergedLeadID is the deleted lead.
	LeadMerged LeadChange = "merged"
	// LeadUpdated: the CRM (the leads API) created or changed the lead:
	// name, status, tags or custom fields. The event carries the lead as
	// it is after the change.
	LeadUpdated LeadChange = "updated"
	// LeadDeleted: the CRM deleted the lead; its messages stay, unlinked.
	LeadDeleted LeadChange = "deleted"
)

// LeadChanges lists every lead change.
var LeadChanges = []LeadChange{LeadCreated, LeadRenamed, LeadPhone, LeadMerged, LeadUpdated, LeadDeleted}

// Name sources of a lead, best first (the display-name order).
const (
	NameSourceCRM         = "crm"          // set in the CRM: never replaced
	NameSourceAddressBook = "address_book" // the phone's address book
	NameSourcePush        = "push"         // the name the person chose
	NameSourceBusiness    = "business"     // verified business name
)

// Lead is published by the persister after the transaction that changed
// the lead committed (wa.<m>.evt.lead). Each fact has a deterministic id
// (LeadEventID), so a replay or redelivery that changes nothing publishes
// nothing new, and a republished fact is dropped as a duplicate.
type Lead struct {
	LeadID       int64      `json:"lead_id"`
	Change       LeadChange `json:"change"`
	Phone        string     `json:"phone,omitempty"`
	LID          string     `json:"lid,omitempty"`
	Name         string     `json:"name,omitempty"`
	NameSource   string     `json:"name_source,omitempty"`
	MergedLeadID int64      `json:"merged_lead_id,omitempty"` // merged: the deleted LID-only lead
	ChatJID      string     `json:"chat_jid,omitempty"`       // created: the chat of the message that created it
	WAID         string     `json:"wa_id,omitempty"`          // created: that message
	// Set on changes made through the leads API (created by the API,
	// updated): the lead's CRM fields after the change.
	Source string            `json:"source,omitempty"` // whatsapp (created from a message) or what the CRM said
	Status string            `json:"status,omitempty"`
	Tags   []string          `json:"tags,omitempty"`
	Fields map[string]string `json:"fields,omitempty"`
}

func (*Lead) EventType() Type { return TypeLead }

func (l *Lead) Validate() error {
	switch {
	case l.LeadID <= 0:
		return invalid("data.lead_id", "must be positive")
	case !slices.Contains(LeadChanges, l.Change):
		return invalid("data.change", fmt.Sprintf("%q", l.Change))
	case l.Change == LeadMerged && l.MergedLeadID <= 0:
		return missing("data.merged_lead_id")
	case l.Phone == "" && l.LID == "":
		return missing("data.phone")
	}
	return checkPhone("data.phone", l.Phone)
}

// GroupEventID is <mentorado>:group:<jid>:<unix ms>:<digest of the snapshot>.
func GroupEventID(mentorado int64, g *Group, observed time.Time) string {
	var b strings.Builder
	b.WriteString(g.Subject + "\x00" + g.Topic + "\x00")
	if g.Left {
		b.WriteString("left\x00")
	}
	for _, p := range g.Participants {
		fmt.Fprintf(&b, "%s,%s,%s,%t\x00", p.JID, p.Phone, p.LID, p.Admin)
	}
	return fmt.Sprintf("%d:group:%s:%d:%s", mentorado, g.JID, observed.UTC().Truncate(time.Millisecond).UnixMilli(), digest(b.String())[:12])
}

// HistoryEventID is <mentorado>:history:<id of the notification message>:
// one progress event per chunk.
func HistoryEventID(mentorado int64, notificationID string) string {
	return fmt.Sprintf("%d:history:%s", mentorado, notificationID)
}

// LeadEventID is <mentorado>:lead:<lead id>:<change>:<key>, where key
// names the fact: the merged lead's id, the phone learned, the name's
// version (unix ms and stream sequence), or nothing for created.
func LeadEventID(mentorado, lead int64, change LeadChange, key string) string {
	if key == "" {
		return fmt.Sprintf("%d:lead:%d:%s", mentorado, lead, change)
	}
	return fmt.Sprintf("%d:lead:%d:%s:%s", mentorado, lead, change, key)
}
