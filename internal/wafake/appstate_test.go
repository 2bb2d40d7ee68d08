package wafake_test

import (
	"testing"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/appstate"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/wafake"
)

// nextContact waits for the events.Contact of jid.
func nextContact(t *testing.T, s *session, jid types.JID) *events.Contact {
	t.Helper()
	for {
		if c := next[*events.Contact](t, s.rec); c.JID == jid {
			return c
		}
	}
}

// The address book set before pairing reaches the client through the key
// share and the full sync of critical_unblock_low; later entries and
// updates arrive through server_sync notifications.
func TestAddressBook(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	const phone = "5511999990700"
	bob := srv.Contact("5511988880700")
	if err := srv.SetAddressBook(phone,
		wafake.AddressBookEntry{Contact: bob, FullName: "Bob Smith", FirstName: "Bob"},
		wafake.AddressBookEntry{Phone: "5511977770700", FullName: "Eve Adams"},
	); err != nil {
		t.Fatal(err)
	}
	s := pair(t, srv, phone, nil, func(cli *whatsmeow.Client) { cli.EmitAppStateEventsOnFullSync = true })
	ctx := ctxT(t)

	c := nextContact(t, s, bob.JID())
	if c.Action.GetFullName() != "Bob Smith" || c.Action.GetFirstName() != "Bob" || c.Action.GetLidJID() != bob.LID().String() || !c.FromFullSync {
		t.Fatalf("bob %+v", c)
	}
	eve := types.NewJID("5511977770700", types.DefaultUserServer)
	if c = nextContact(t, s, eve); c.Action.GetFullName() != "Eve Adams" {
		t.Fatalf("eve %+v", c)
	}
	for {
		if done := next[*events.AppStateSyncComplete](t, s.rec); done.Name == appstate.WAPatchCriticalUnblockLow {
			break
		}
	}

	// Later: a new entry and an update of an existing one.
	carol := srv.Contact("5511988880701")
	if err := srv.SetAddressBook(phone, wafake.AddressBookEntry{Contact: carol, FullName: "Carol"}); err != nil {
		t.Fatal(err)
	}
	if c = nextContact(t, s, carol.JID()); c.Action.GetFullName() != "Carol" || c.FromFullSync {
		t.Fatalf("carol %+v", c)
	}
	if err := srv.SetAddressBook(phone, wafake.AddressBookEntry{Contact: bob, FullName: "Robert Smith", FirstName: "Robert"}); err != nil {
		t.Fatal(err)
	}
	if c = nextContact(t, s, bob.JID()); c.Action.GetFullName() != "Robert Smith" {
		t.Fatalf("bob renamed %+v", c)
	}
	info, err := s.cli.Store.Contacts.GetContact(ctx, bob.JID())
	if err != nil || info.FullName != "Robert Smith" || info.FirstName != "Robert" {
		t.Fatalf("stored bob %+v %v", info, err)
	}
}

// An address book set while the client is online (and not emitting full
// sync events) lands in whatsmeow's contact store.
func TestAddressBookOnlineSilent(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990710", nil)
	bob := srv.Contact("5511988880710")
	ctx := ctxT(t)
	if err := srv.SetAddressBook(s.phone, wafake.AddressBookEntry{Contact: bob, FullName: "Bob Online", FirstName: "Bob"}); err != nil {
		t.Fatal(err)
	}
	for {
		if done := next[*events.AppStateSyncComplete](t, s.rec); done.Name == appstate.WAPatchCriticalUnblockLow {
			break
		}
	}
	info, err := s.cli.Store.Contacts.GetContact(ctx, bob.JID())
	if err != nil || info.FullName != "Bob Online" {
		t.Fatalf("stored bob %+v %v", info, err)
	}
	if n := count[*events.Contact](s.rec); n != 0 {
		t.Fatalf("%d contact events on a silent full sync", n)
	}
}
