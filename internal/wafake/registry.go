package wafake

import (
	"go.mau.fi/whatsmeow/types"

	"github.com/zapbus/zapbus/internal/phone"
)

// Who is on WhatsApp: the answer to cli.IsOnWhatsApp (a usync query with
// <contact>+<number>@c.us</contact>, answered <contact type="in"|"out">).
//
// By default every number is on WhatsApp (a contact is created on demand),
// except that a Brazilian mobile is one person under one form: when the
// other form (with or without the 9th digit, phone.BrazilVariants) is a
// known contact, this form answers "out". SetRegistered(phone, false) takes
// a number off WhatsApp; SetStrictRegistry(true) makes only the numbers a
// test created (Contact, accounts, SetRegistered(…, true)) registered.

// SetRegistered says whether phone (E.164 digits) is on WhatsApp. false:
// contact queries for it answer "out" (whatever else the test did with the
// number); true: it is a known contact (created if needed), "in" even in
// strict mode. A client that sends to an unregistered number anyway gets
// an empty device list for it: the message is acked and reaches no one
// (the "ghost chat" of a wrong 9th-digit form).
func (s *Server) SetRegistered(phone string, registered bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if registered {
		delete(s.unregistered, phone)
		s.userLocked(phone).onDemand = false
		return
	}
	s.unregistered[phone] = true
}

// SetStrictRegistry makes only the numbers the test created registered:
// Contact(phone), accounts, SetRegistered(phone, true) and address book
// entries. Numbers a client merely queried or sent to are "out". Default
// false: every number is on WhatsApp unless SetRegistered(phone, false) or
// the Brazilian 9th-digit rule says otherwise.
func (s *Server) SetStrictRegistry(v bool) {
	s.mu.Lock()
	s.strictRegistry = v
	s.mu.Unlock()
}

// SetBrazilAliasing changes how the other form of a Brazilian mobile
// answers: by default "out" (only the registered form is "in"); with
// aliasing "in" with the registered form's JID, as the real server is
// reported to answer for some numbers. Either way a client that takes the
// JID of an "in" answer reaches the registered form.
func (s *Server) SetBrazilAliasing(v bool) {
	s.mu.Lock()
	s.brazilAlias = v
	s.mu.Unlock()
}

// registeredLocked reports whether a known contact is on WhatsApp.
func (s *Server) registeredLocked(u *Contact) bool {
	return !s.unregistered[u.phone] && (!u.onDemand || !s.strictRegistry)
}

// contactQueryLocked answers a contact query for num: the JID to answer
// with, whether it is "in", and the contact (nil when "out").
func (s *Server) contactQueryLocked(num string) (types.JID, bool, *Contact) {
	jid := types.NewJID(num, types.DefaultUserServer)
	if !isDigits(num) || s.unregistered[num] {
		return jid, false, nil
	}
	u := s.users[num]
	if u != nil && s.registeredLocked(u) {
		return u.pn, true, u
	}
	for _, v := range phone.BrazilVariants(num)[1:] {
		if w := s.users[v]; w != nil && s.registeredLocked(w) {
			// The person is registered under the other form.
			if s.brazilAlias {
				return w.pn, true, w
			}
			return jid, false, nil
		}
	}
	if u != nil || s.strictRegistry {
		return jid, false, nil
	}
	u = s.userLocked(num)
	u.onDemand = true
	return u.pn, true, u
}

// offWhatsAppLocked reports whether the registry answers "out" for num,
// without creating anything.
func (s *Server) offWhatsAppLocked(num string) bool {
	if s.unregistered[num] {
		return true
	}
	u := s.users[num]
	if u != nil && s.registeredLocked(u) {
		return false
	}
	for _, v := range phone.BrazilVariants(num)[1:] {
		if w := s.users[v]; w != nil && s.registeredLocked(w) {
			return true
		}
	}
	return u != nil || s.strictRegistry
}
