package event

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Subject layout: the mentorado comes first so one permission (wa.42.>)
// scopes a tenant.
const (
	SubjectPrefix = "wa"
	// EventsWildcard matches every stored event of every mentorado.
	EventsWildcard = "wa.*.evt.>"
	// QRWildcard matches every QR subject.
	QRWildcard = "wa.*.qr"
)

// EventSubject is wa.<mentorado>.evt.<type>.
func EventSubject(mentorado int64, t Type) string {
	return fmt.Sprintf("wa.%d.evt.%s", mentorado, t)
}

// MentoradoEvents is wa.<mentorado>.evt.> — all stored events of one tenant.
func MentoradoEvents(mentorado int64) string { return fmt.Sprintf("wa.%d.evt.>", mentorado) }

// QRSubject is wa.<mentorado>.qr.
func QRSubject(mentorado int64) string { return fmt.Sprintf("wa.%d.qr", mentorado) }

// CommandSubject is wa.<mentorado>.cmd.<verb>.
func CommandSubject(mentorado int64, v Verb) string {
	return fmt.Sprintf("wa.%d.cmd.%s", mentorado, v)
}

// CommandWildcard is wa.*.cmd.> — what a connector listens on.
const CommandWildcard = "wa.*.cmd.>"

// ParseSubject returns the mentorado and last token (event type, verb or
// "qr") of a zapbus subject.
func ParseSubject(subject string) (mentorado int64, kind string, err error) {
	parts := strings.Split(subject, ".")
	if len(parts) < 3 || parts[0] != SubjectPrefix {
		return 0, "", fmt.Errorf("event: not a zapbus subject: %q", subject)
	}
	id, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || id <= 0 {
		return 0, "", fmt.Errorf("event: bad mentorado in subject %q", subject)
	}
	switch {
	case len(parts) == 3 && parts[2] == "qr":
		return id, "qr", nil
	case len(parts) == 4 && (parts[2] == "evt" || parts[2] == "cmd"):
		return id, parts[3], nil
	}
	return 0, "", fmt.Errorf("event: not a zapbus subject: %q", subject)
}

// Deterministic ids. Each is used both as the envelope id and as the
// JetStream Nats-Msg-Id, so the same WhatsApp fact published twice is stored
// once.

// MessageEventID is <mentorado>:msg:<whatsapp id>.
func MessageEventID(mentorado int64, waID string) string {
	return fmt.Sprintf("%d:msg:%s", mentorado, waID)
}

// MediaEventID is <mentorado>:media:<wa id>: one media event per message,
// whether it says stored or failed.
func MediaEventID(mentorado int64, waID string) string {
	return fmt.Sprintf("%d:media:%s", mentorado, waID)
}

// ReceiptEventID is <mentorado>:rcpt:<id>:<kind>, with a digest of all ids
// when the receipt covers several messages.
func ReceiptEventID(mentorado int64, kind ReceiptKind, fromMe bool, ids []string) string {
	key := ids[0]
	if len(ids) > 1 {
		sorted := slices.Clone(ids)
		slices.Sort(sorted)
		key = digest(strings.Join(sorted, ","))
	}
	from := ""
	if fromMe {
		from = ":me"
	}
	return fmt.Sprintf("%d:rcpt:%s:%s%s", mentorado, key, kind, from)
}

// ContactEventID is <mentorado>:contact:<jid>:<unix ms observed>:<digest of
// the fields>. The observation time (the WhatsApp timestamp of the message
// or sync that carried the facts, the envelope's occurred_at) is part of
// it, so a name changed A → B → A is three events, not two, while a retried
// publish of the same observation keeps its id and is dropped.
func ContactEventID(mentorado int64, c *Contact, observed time.Time) string {
	return fmt.Sprintf("%d:contact:%s:%d:%s", mentorado, c.JID, observed.UTC().Truncate(time.Millisecond).UnixMilli(),
		digest(strings.Join([]string{c.Phone, c.LID, c.Name, c.PushName, c.BusinessName}, "\x00"))[:12])
}

// ConnectionEventID is <mentorado>:conn:<status>:<unix nanos of the change>.
func ConnectionEventID(mentorado int64, s Status, at time.Time) string {
	return fmt.Sprintf("%d:conn:%s:%d", mentorado, s, at.UnixNano())
}

// QREventID is <mentorado>:qr:<digest of the code>; the code itself never
// appears in ids or logs.
func QREventID(mentorado int64, q *QR) string {
	return fmt.Sprintf("%d:qr:%s", mentorado, digest(q.Code + q.PairingCode)[:16])
}

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
