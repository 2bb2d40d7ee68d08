package wafake

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mau.fi/libsignal/groups"
	"go.mau.fi/libsignal/protocol"
	"google.golang.org/protobuf/proto"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
)

// Errors about groups.
var (
	ErrUnknownGroup = errors.New("wafake: no such group")
	ErrNotInGroup   = errors.New("wafake: not a member of the group")
)

// group is a fake WhatsApp group. The fake only models LID-addressed groups
// (addressing_mode="lid"), which is what WhatsApp creates today.
type group struct {
	jid       types.JID
	subject   string
	subjectAt time.Time
	subjectBy *Contact
	topic     string
	topicID   string
	topicAt   time.Time
	topicBy   *Contact
	created   time.Time
	creator   *Contact
	members   []*groupMember
	pVersion  int
	sentBy    map[string]*Account // message ids a client sent to the group
}

type groupMember struct {
	u     *Contact
	admin bool
	super bool
}

func (g *group) member(u *Contact) *groupMember {
	for _, m := range g.members {
		if m.u == u {
			return m
		}
	}
	return nil
}

// participantNode is how the server lists a member: its LID with the phone
// number, unless the member hides it (LID-only).
func participantNode(m *groupMember) waBinary.Node {
	attrs := waBinary.Attrs{"jid": m.u.lid}
	if !m.u.lidOnly {
		attrs["phone_number"] = m.u.pn
	}
	switch {
	case m.super:
		attrs["type"] = "superadmin"
	case m.admin:
		attrs["type"] = "admin"
	}
	return waBinary.Node{Tag: "participant", Attrs: attrs}
}

// nodeLocked is the <group> element of the group info answer and of the
// create notification.
func (g *group) nodeLocked() waBinary.Node {
	attrs := waBinary.Attrs{
		"id":              g.jid.User,
		"subject":         g.subject,
		"s_t":             fmt.Sprint(g.subjectAt.Unix()),
		"creation":        fmt.Sprint(g.created.Unix()),
		"creator":         g.creator.lid,
		"addressing_mode": string(types.AddressingModeLID),
		"size":            fmt.Sprint(len(g.members)),
		"p_v_id":          fmt.Sprint(g.pVersion),
	}
	if !g.creator.lidOnly {
		attrs["creator_pn"] = g.creator.pn
	}
	if g.subjectBy != nil {
		attrs["s_o"] = g.subjectBy.lid
		if !g.subjectBy.lidOnly {
			attrs["s_o_pn"] = g.subjectBy.pn
		}
	}
	content := make([]waBinary.Node, 0, len(g.members)+1)
	for _, m := range g.members {
		content = append(content, participantNode(m))
	}
	if g.topic != "" {
		d := waBinary.Node{Tag: "description", Attrs: waBinary.Attrs{
			"id": g.topicID, "t": fmt.Sprint(g.topicAt.Unix()),
		}, Content: []waBinary.Node{{Tag: "body", Content: []byte(g.topic)}}}
		if g.topicBy != nil {
			d.Attrs["participant"] = g.topicBy.lid
		}
		content = append(content, d)
	}
	return waBinary.Node{Tag: "group", Attrs: attrs, Content: content}
}

// accountsLocked returns the accounts among the members that have a
// companion device (the clients that get the group's stanzas).
func (g *group) accountsLocked() []*Account {
	var out []*Account
	for _, m := range g.members {
		if a := m.u.account; a != nil && a.device != 0 {
			out = append(out, a)
		}
	}
	return out
}

func randomDigits(n int) string {
	b := randomBytes(n)
	for i := range b {
		b[i] = '0' + b[i]%10
	}
	return string(b)
}

func (s *Server) groupLocked(jid types.JID) (*group, error) {
	g := s.groups[jid.ToNonAD()]
	if g == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownGroup, jid)
	}
	return g, nil
}

// CreateGroup creates a group with the account and members, the account as
// its creator (superadmin). Its JID looks like WhatsApp's
// (120363…@g.us). Every member account's client gets the <notification
// type="w:gp2"><create> WhatsApp sends (events.JoinedGroup), now or from
// the offline queue at its next login.
func (s *Server) CreateGroup(ctx context.Context, accountPhone, subject string, members ...*Contact) (types.JID, error) {
	if !isDigits(accountPhone) {
		return types.EmptyJID, fmt.Errorf("wafake: phone %q is not E.164 digits", accountPhone)
	}
	s.mu.Lock()
	a := s.accountLocked(accountPhone)
	now := time.Now()
	g := &group{
		jid:       types.NewJID("120363"+randomDigits(12), types.GroupServer),
		subject:   subject,
		subjectAt: now,
		subjectBy: a.user,
		created:   now,
		creator:   a.user,
		pVersion:  1,
		sentBy:    map[string]*Account{},
	}
	g.members = append(g.members, &groupMember{u: a.user, admin: true, super: true})
	for _, m := range members {
		if m != nil && g.member(m) == nil {
			g.members = append(g.members, &groupMember{u: m})
		}
	}
	s.groups[g.jid] = g
	create := waBinary.Node{Tag: "create", Attrs: waBinary.Attrs{
		"type": "new", "reason": "create", "key": newID(),
	}, Content: []waBinary.Node{g.nodeLocked()}}
	n := s.groupNotificationLocked(g, a.user, create)
	targets := g.accountsLocked()
	s.mu.Unlock()
	for _, t := range targets {
		s.queueStanza(t, n)
	}
	return g.jid, ctx.Err()
}

// groupNotificationLocked wraps a change in <notification type="w:gp2">
// from the group, sent by actor.
func (s *Server) groupNotificationLocked(g *group, actor *Contact, child waBinary.Node) waBinary.Node {
	attrs := waBinary.Attrs{
		"from": g.jid, "id": newID(), "type": "w:gp2", "t": fmt.Sprint(time.Now().Unix()),
		"addressing_mode": string(types.AddressingModeLID),
	}
	if actor != nil {
		attrs["participant"] = actor.lid
		if !actor.lidOnly {
			attrs["participant_pn"] = actor.pn
		}
		if actor.pushName != "" {
			attrs["notify"] = actor.pushName
		}
	}
	return waBinary.Node{Tag: "notification", Attrs: attrs, Content: []waBinary.Node{child}}
}

// change applies f to the group and sends the notification it returns to
// every member account (also to accounts f removes, listed by f's caller
// through extra).
func (s *Server) change(ctx context.Context, jid types.JID, f func(g *group) (waBinary.Node, []*Account, error)) error {
	s.mu.Lock()
	g, err := s.groupLocked(jid)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	before := g.accountsLocked()
	child, extra, err := f(g)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	n := s.groupNotificationLocked(g, g.creator, child)
	targets := g.accountsLocked()
	for _, a := range append(before, extra...) {
		if !slices.Contains(targets, a) {
			targets = append(targets, a)
		}
	}
	s.mu.Unlock()
	for _, t := range targets {
		s.queueStanza(t, n)
	}
	return ctx.Err()
}

// SetGroupSubject renames the group (<subject> notification:
// events.GroupInfo.Name). The creator is the actor.
func (s *Server) SetGroupSubject(ctx context.Context, jid types.JID, subject string) error {
	return s.change(ctx, jid, func(g *group) (waBinary.Node, []*Account, error) {
		g.subject, g.subjectAt, g.subjectBy = subject, time.Now(), g.creator
		attrs := waBinary.Attrs{"subject": subject, "s_t": fmt.Sprint(g.subjectAt.Unix()), "s_o": g.creator.lid}
		if !g.creator.lidOnly {
			attrs["s_o_pn"] = g.creator.pn
		}
		return waBinary.Node{Tag: "subject", Attrs: attrs}, nil, nil
	})
}

// SetGroupTopic sets the group's description (<description> notification:
// events.GroupInfo.Topic); "" deletes it.
func (s *Server) SetGroupTopic(ctx context.Context, jid types.JID, topic string) error {
	return s.change(ctx, jid, func(g *group) (waBinary.Node, []*Account, error) {
		prev := g.topicID
		g.topic, g.topicID, g.topicAt, g.topicBy = topic, newID(), time.Now(), g.creator
		d := waBinary.Node{Tag: "description", Attrs: waBinary.Attrs{"id": g.topicID}}
		if prev != "" {
			d.Attrs["prev"] = prev
		}
		if topic == "" {
			d.Content = []waBinary.Node{{Tag: "delete"}}
		} else {
			d.Content = []waBinary.Node{{Tag: "body", Content: []byte(topic)}}
		}
		return d, nil, nil
	})
}

// AddParticipants adds members (<add> notification: events.GroupInfo.Join).
func (s *Server) AddParticipants(ctx context.Context, jid types.JID, members ...*Contact) error {
	return s.change(ctx, jid, func(g *group) (waBinary.Node, []*Account, error) {
		prev := g.pVersion
		g.pVersion++
		add := waBinary.Node{Tag: "add", Attrs: waBinary.Attrs{
			"reason": "invite", "prev_v_id": fmt.Sprint(prev), "v_id": fmt.Sprint(g.pVersion),
		}}
		var list []waBinary.Node
		for _, u := range members {
			if u == nil || g.member(u) != nil {
				continue
			}
			m := &groupMember{u: u}
			g.members = append(g.members, m)
			list = append(list, participantNode(m))
		}
		if len(list) == 0 {
			return add, nil, errors.New("wafake: nobody to add")
		}
		add.Content = list
		return add, nil, nil
	})
}

// RemoveParticipants removes members (<remove> notification:
// events.GroupInfo.Leave). Removed accounts get the notification too. Like
// WhatsApp clients, the remaining members rotate their sender keys: their
// next group message distributes a new one.
func (s *Server) RemoveParticipants(ctx context.Context, jid types.JID, members ...*Contact) error {
	return s.change(ctx, jid, func(g *group) (waBinary.Node, []*Account, error) {
		prev := g.pVersion
		g.pVersion++
		rm := waBinary.Node{Tag: "remove", Attrs: waBinary.Attrs{
			"reason": "remove", "prev_v_id": fmt.Sprint(prev), "v_id": fmt.Sprint(g.pVersion),
		}}
		var list []waBinary.Node
		var removed []*Account
		for _, u := range members {
			m := g.member(u)
			if m == nil {
				continue
			}
			list = append(list, participantNode(m))
			g.members = slices.DeleteFunc(g.members, func(x *groupMember) bool { return x == m })
			if a := u.account; a != nil && a.device != 0 {
				removed = append(removed, a)
			}
		}
		if len(list) == 0 {
			return rm, nil, fmt.Errorf("%w: nobody to remove", ErrNotInGroup)
		}
		for _, m := range g.members {
			m.u.rotateSenderKeyLocked(g.jid)
		}
		rm.Content = list
		return rm, removed, nil
	})
}

// RemoveAccount removes the account from the group (it gets the <remove>
// notification; later group info queries answer 403 and sends fail).
func (s *Server) RemoveAccount(ctx context.Context, jid types.JID, accountPhone string) error {
	s.mu.Lock()
	u := s.users[accountPhone]
	s.mu.Unlock()
	if u == nil {
		return fmt.Errorf("%w: %s", ErrUnknownAccount, accountPhone)
	}
	return s.RemoveParticipants(ctx, jid, u)
}

// GroupMembers returns the group's members (the account's own phone
// included), in order.
func (s *Server) GroupMembers(jid types.JID) ([]*Contact, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.groupLocked(jid)
	if err != nil {
		return nil, err
	}
	out := make([]*Contact, 0, len(g.members))
	for _, m := range g.members {
		out = append(out, m.u)
	}
	return out, nil
}

// handleGroupIQ answers w:g2 queries: group info for members (404 for an
// unknown group, 403 for one the account is not or no longer in), the
// list of joined groups (GetJoinedGroups) and the client leaving a group
// (LeaveGroup). Other group changes by the client are not implemented.
func (s *Server) handleGroupIQ(c *conn, n *waBinary.Node, first waBinary.Node) {
	to, _ := n.Attrs["to"].(types.JID)
	typ := attrString(n, "type")
	switch {
	case typ == "get" && first.Tag == "query" && to.Server == types.GroupServer && to.User != "":
		s.mu.Lock()
		g := s.groups[to.ToNonAD()]
		var res waBinary.Node
		switch {
		case g == nil:
			res = iqError(n, 404, "item-not-found")
		case c.acct == nil || g.member(c.acct.user) == nil:
			res = iqError(n, 403, "forbidden")
		default:
			res = iqResult(n, g.nodeLocked())
			res.Attrs["from"] = g.jid
		}
		s.mu.Unlock()
		_ = c.send(res)
	case typ == "get" && first.Tag == "participating":
		s.mu.Lock()
		var list []*group
		for _, g := range s.groups {
			if c.acct != nil && g.member(c.acct.user) != nil {
				list = append(list, g)
			}
		}
		slices.SortFunc(list, func(a, b *group) int { return a.created.Compare(b.created) })
		nodes := make([]waBinary.Node, 0, len(list))
		for _, g := range list {
			nodes = append(nodes, g.nodeLocked())
		}
		s.mu.Unlock()
		_ = c.send(iqResult(n, waBinary.Node{Tag: "groups", Content: nodes}))
	case typ == "set" && first.Tag == "leave":
		s.handleLeaveGroup(c, n, first)
	default:
		_ = c.send(iqError(n, 501, "feature-not-implemented"))
	}
}

// handleLeaveGroup removes the account from the groups in <leave> and
// notifies the members (the leaver is the actor, the leaver's client gets
// the notification too).
func (s *Server) handleLeaveGroup(c *conn, n *waBinary.Node, leave waBinary.Node) {
	var results []waBinary.Node
	for _, gn := range leave.GetChildren() {
		jid, _ := gn.Attrs["id"].(types.JID)
		s.mu.Lock()
		g := s.groups[jid.ToNonAD()]
		a := c.acct
		var m *groupMember
		if g != nil && a != nil {
			m = g.member(a.user)
		}
		if m == nil {
			s.mu.Unlock()
			results = append(results, waBinary.Node{Tag: "group", Attrs: waBinary.Attrs{"id": jid, "error": "404"}})
			continue
		}
		targets := g.accountsLocked()
		prev := g.pVersion
		g.pVersion++
		g.members = slices.DeleteFunc(g.members, func(x *groupMember) bool { return x == m })
		for _, o := range g.members {
			o.u.rotateSenderKeyLocked(g.jid)
		}
		note := s.groupNotificationLocked(g, a.user, waBinary.Node{Tag: "remove", Attrs: waBinary.Attrs{
			"reason": "leave", "prev_v_id": fmt.Sprint(prev), "v_id": fmt.Sprint(g.pVersion),
		}, Content: []waBinary.Node{participantNode(m)}})
		s.mu.Unlock()
		for _, t := range targets {
			s.queueStanza(t, note)
		}
		results = append(results, waBinary.Node{Tag: "group", Attrs: waBinary.Attrs{"id": jid}})
	}
	_ = c.send(iqResult(n, waBinary.Node{Tag: "leave", Content: results}))
}

func (u *Contact) senderKeyName(g types.JID) *protocol.SenderKeyName {
	return protocol.NewSenderKeyName(g.String(), u.lid.SignalAddress())
}

// rotateSenderKeyLocked drops the contact's own sender key for the group:
// the next group message creates and distributes a new one.
func (u *Contact) rotateSenderKeyLocked(g types.JID) {
	u.peer.store.deleteSenderKey(u.senderKeyName(g))
	for k := range u.skdmSent {
		if k.group == g {
			delete(u.skdmSent, k)
		}
	}
}

// skdmKey is a companion device that has a contact's sender key for a
// group (a new pairing of the account needs it again).
type skdmKey struct {
	group  types.JID
	acct   *Account
	device uint16
}

// isMemberLocked reports whether the account is in the group.
func (s *Server) isMemberLocked(jid types.JID, a *Account) bool {
	g := s.groups[jid.ToNonAD()]
	return g != nil && a != nil && g.member(a.user) != nil
}

// SendGroupMedia sends an attachment to the group from the contact's phone,
// like Contact.SendMedia (same kinds and options; ReplyTo quotes a message
// of the group, by whoever sent it). Member clients can cli.Download it and
// ask for a media retry.
func (c *Contact) SendGroupMedia(ctx context.Context, group types.JID, kind string, data []byte, o MediaOptions) (string, error) {
	spec, ok := mediaSpecs[kind]
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownMediaKind, kind)
	}
	msg, mm, err := c.buildMedia(kind, spec, data, o, c.groupReplyContext(group, o.ReplyTo))
	if err != nil {
		return "", err
	}
	id := newID()
	mm.id, mm.group = id, group.ToNonAD()
	s := c.s
	s.mu.Lock()
	mm.blob.msgID = id
	s.media[id] = mm
	s.mu.Unlock()
	return c.sendGroupMessageID(ctx, group, id, msg)
}

// groupReplyContext quotes quotedID in the group: StanzaID, Participant (the
// quoted sender's LID, when the fake knows who sent it) and the quoted
// message when the fake has its plaintext.
func (c *Contact) groupReplyContext(group types.JID, quotedID string) *waE2E.ContextInfo {
	if quotedID == "" {
		return nil
	}
	ci := &waE2E.ContextInfo{StanzaID: proto.String(quotedID)}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.inbound[quotedID]; m != nil && m.from != nil && m.group == group.ToNonAD() {
		ci.Participant = proto.String(m.from.lid.String())
		var q waE2E.Message
		if m.plain != nil && proto.Unmarshal(m.plain, &q) == nil {
			ci.QuotedMessage = &q
		}
	} else if g := s.groups[group.ToNonAD()]; g != nil && g.sentBy[quotedID] != nil {
		ci.Participant = proto.String(g.sentBy[quotedID].user.lid.String())
		for _, r := range c.received {
			if r.ID == quotedID {
				ci.QuotedMessage = r.Message
			}
		}
	}
	return ci
}

// SendGroupText sends a text to the group from the contact's phone.
func (c *Contact) SendGroupText(ctx context.Context, group types.JID, text string) (string, error) {
	return c.SendGroupMessage(ctx, group, &waE2E.Message{Conversation: proto.String(text)})
}

// SendGroupMessage sends msg to the group as WhatsApp does: the contact's
// sender key encrypts it once (<enc type="skmsg">); for every member
// account's companion device that has not yet got the contact's current
// sender key, the stanza also carries a 1:1 Signal message (<enc
// type="pkmsg"|"msg">) with the SenderKeyDistributionMessage. The stanza is
// <message from=group participant=LID participant_pn=PN
// addressing_mode="lid">; participant_pn is left out for a LID-only
// contact. Replies and reactions are whatever msg carries (ContextInfo with
// StanzaID and Participant; ReactionMessage.Key with RemoteJID = the group
// and Participant). Queued like 1:1 messages until the client receipts it.
func (c *Contact) SendGroupMessage(ctx context.Context, group types.JID, msg *waE2E.Message) (string, error) {
	return c.sendGroupMessageID(ctx, group, newID(), msg)
}

func (c *Contact) sendGroupMessageID(ctx context.Context, group types.JID, id string, msg *waE2E.Message) (string, error) {
	plain, err := proto.Marshal(msg)
	if err != nil {
		return "", err
	}
	s := c.s
	s.mu.Lock()
	g, err := s.groupLocked(group)
	if err == nil && g.member(c) == nil {
		err = fmt.Errorf("%w: %s in %s", ErrNotInGroup, c.phone, group)
	}
	if err != nil {
		s.mu.Unlock()
		return "", err
	}
	group = g.jid
	var targets []*Account
	for _, a := range g.accountsLocked() {
		if a.user != c {
			targets = append(targets, a)
		}
	}
	pushName, lidOnly := c.pushName, c.lidOnly
	s.mu.Unlock()

	name := c.senderKeyName(group)
	c.peer.mu.Lock()
	builder := groups.NewGroupSessionBuilder(c.peer.store, serializer)
	skdm, err := builder.Create(ctx, name)
	var skmsg []byte
	if err == nil {
		var ct protocol.GroupCiphertextMessage
		ct, err = groups.NewGroupCipher(builder, name, c.peer.store).Encrypt(ctx, pad(plain))
		if err == nil {
			skmsg = ct.SignedSerialize()
		}
	}
	c.peer.mu.Unlock()
	if err != nil {
		return "", fmt.Errorf("wafake: sender key: %w", err)
	}
	skdmPlain, err := proto.Marshal(&waE2E.Message{SenderKeyDistributionMessage: &waE2E.SenderKeyDistributionMessage{
		GroupID:                             proto.String(group.String()),
		AxolotlSenderKeyDistributionMessage: skdm.Serialize(),
	}})
	if err != nil {
		return "", err
	}

	for _, a := range targets {
		attrs := waBinary.Attrs{
			"from": group, "participant": c.lid, "participant_pn": c.pn,
			"addressing_mode": string(types.AddressingModeLID),
			"id":              id, "t": fmt.Sprint(time.Now().Unix()), "type": stanzaType(msg),
		}
		if lidOnly {
			delete(attrs, "participant_pn")
		}
		if e := editAttr(msg); e != "" {
			attrs["edit"] = e
		}
		if pushName != "" {
			attrs["notify"] = pushName
		}
		var content []waBinary.Node
		s.mu.Lock()
		key := skdmKey{group, a, a.device}
		needSKDM := !c.skdmSent[key]
		addr := a.lidDeviceLocked().SignalAddress()
		if needSKDM && c.pnSession[a] {
			// The client's session with this contact is under its phone
			// number, but group stanzas come from the LID: start a new
			// session (pkmsg) under the LID, as a reinstalled phone would.
			_ = c.peer.store.DeleteSession(ctx, addr)
			c.pnSession[a] = false
		}
		var b *bundle
		if needSKDM && !c.peer.hasSession(addr) {
			b = a.accountBundleLocked()
		}
		s.mu.Unlock()
		if needSKDM {
			ct, encType, err := c.peer.encrypt(ctx, addr, b, skdmPlain)
			if err != nil {
				return "", fmt.Errorf("wafake: encrypt sender key distribution for %s: %w", a.user.phone, err)
			}
			content = append(content, waBinary.Node{Tag: "enc", Attrs: waBinary.Attrs{"v": "2", "type": encType}, Content: ct})
		}
		encAttrs := waBinary.Attrs{"v": "2", "type": "skmsg"}
		if mt := mediaTypeAttr(msg); mt != "" {
			encAttrs["mediatype"] = mt
		}
		content = append(content, waBinary.Node{Tag: "enc", Attrs: encAttrs, Content: skmsg})
		node := waBinary.Node{Tag: "message", Attrs: attrs, Content: content}
		m := &inboundMsg{id: id, acct: a, from: c, node: node, group: group, plain: plain}
		s.mu.Lock()
		c.skdmSent[key] = true
		c.lidKnown[a] = true
		if s.inbound[id] == nil {
			s.inbound[id] = m
		}
		a.inbox = append(a.inbox, m)
		s.notifyLocked()
		s.mu.Unlock()
		s.flush(a)
	}
	return id, nil
}

// SendGroupReceipt makes the contact acknowledge a message a client sent to
// the group: kind "" or "delivered", "read" or "played". The sending client
// gets <receipt from=group participant=LID> (events.Receipt with Chat = the
// group and Sender = the contact).
func (c *Contact) SendGroupReceipt(ctx context.Context, group types.JID, msgID, kind string) error {
	s := c.s
	s.mu.Lock()
	g, err := s.groupLocked(group)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	var targets []*Account
	if a := g.sentBy[msgID]; a != nil {
		targets = []*Account{a}
	} else {
		for _, a := range g.accountsLocked() {
			if a.user != c {
				targets = append(targets, a)
			}
		}
	}
	attrs := waBinary.Attrs{"from": g.jid, "participant": c.lid, "id": msgID, "t": fmt.Sprint(time.Now().Unix())}
	s.mu.Unlock()
	if kind != "" && kind != "delivered" {
		attrs["type"] = kind
	}
	for _, a := range targets {
		s.queueStanza(a, waBinary.Node{Tag: "receipt", Attrs: attrs})
	}
	return ctx.Err()
}

// handleClientGroupMessage handles a client's message to a group: every
// member contact decrypts the sender key distribution addressed to it (a
// 1:1 <enc> in <participants>) and then the <enc type="skmsg">.
func (s *Server) handleClientGroupMessage(c *conn, n *waBinary.Node, to types.JID) {
	id := attrString(n, "id")
	ack := waBinary.Node{Tag: "ack", Attrs: waBinary.Attrs{
		"class": "message", "id": id, "t": fmt.Sprint(time.Now().Unix()), "from": to,
	}}
	s.mu.Lock()
	a := c.acct
	g := s.groups[to.ToNonAD()]
	var sender types.JID
	var members []*Contact
	switch {
	case a == nil:
		ack.Attrs["error"] = "401"
	case g == nil:
		ack.Attrs["error"] = "404"
	case g.member(a.user) == nil:
		ack.Attrs["error"] = "403"
	default:
		sender = a.lidDeviceLocked()
		g.sentBy[id] = a
		for _, m := range g.members {
			if m.u != a.user {
				members = append(members, m.u)
			}
		}
	}
	s.mu.Unlock()
	if len(members) == 0 && ack.Attrs["error"] != nil {
		_ = c.send(ack)
		return
	}
	addr := sender.SignalAddress()
	name := protocol.NewSenderKeyName(g.jid.String(), addr)
	// Sender key distributions, 1:1 encrypted per device.
	for _, p := range childrenOf(n.GetChildByTag("participants")) {
		jid, ok := p.Attrs["jid"].(types.JID)
		if p.Tag != "to" || !ok || jid.Device != 0 {
			continue
		}
		s.mu.Lock()
		u := s.lookupLocked(jid, false)
		s.mu.Unlock()
		if u == nil {
			continue
		}
		enc := p.GetChildByTag("enc")
		content, _ := enc.Content.([]byte)
		plain, err := u.peer.decrypt(s.ctx, addr, attrString(&enc, "type"), content)
		if err != nil {
			s.log.Warn().Err(err).Str("to", jid.String()).Str("id", id).Msg("member failed to decrypt sender key distribution")
			continue
		}
		var msg waE2E.Message
		if err = proto.Unmarshal(plain, &msg); err != nil {
			continue
		}
		if raw := msg.GetSenderKeyDistributionMessage().GetAxolotlSenderKeyDistributionMessage(); raw != nil {
			skdm, err := protocol.NewSenderKeyDistributionMessageFromBytes(raw, serializer.SenderKeyDistributionMessage)
			if err == nil {
				u.peer.mu.Lock()
				err = groups.NewGroupSessionBuilder(u.peer.store, serializer).Process(s.ctx, name, skdm)
				u.peer.mu.Unlock()
			}
			if err != nil {
				s.log.Warn().Err(err).Str("to", jid.String()).Msg("member failed to process sender key distribution")
			}
		}
	}
	enc, ok := n.GetOptionalChildByTag("enc")
	content, _ := enc.Content.([]byte)
	if ok && attrString(&enc, "type") == "skmsg" {
		for _, u := range members {
			u.peer.mu.Lock()
			var plain []byte
			skm, err := protocol.NewSenderKeyMessageFromBytes(content, serializer.SenderKeyMessage)
			if err == nil {
				plain, err = groups.NewGroupCipher(groups.NewGroupSessionBuilder(u.peer.store, serializer), name, u.peer.store).Decrypt(s.ctx, skm)
			}
			u.peer.mu.Unlock()
			if err == nil {
				plain, err = unpad(plain)
			}
			var msg waE2E.Message
			if err == nil {
				err = proto.Unmarshal(plain, &msg)
			}
			if err != nil {
				s.log.Warn().Err(err).Str("member", u.phone).Str("id", id).Msg("member failed to decrypt group message")
				continue
			}
			media, mediaErr := s.fetchMedia(id, &msg)
			s.mu.Lock()
			s.receiveLocked(u, Received{
				ID: id, Text: messageText(&msg), Message: &msg, From: a.user.phone, FromJID: sender,
				To: g.jid, Chat: g.jid, Type: attrString(n, "type"), Timestamp: time.Now(),
				Media: media, MediaErr: mediaErr,
			})
			s.notifyLocked()
			s.mu.Unlock()
		}
	}
	_ = c.send(ack)
}
