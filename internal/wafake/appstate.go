package wafake

import (
	"context"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"go.mau.fi/whatsmeow/appstate"
	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waServerSync"
	"go.mau.fi/whatsmeow/proto/waSyncAction"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	waLog "go.mau.fi/whatsmeow/util/log"
)

// AddressBookEntry is one contact of an account's address book (the
// phone's contact list, app state collection critical_unblock_low).
type AddressBookEntry struct {
	// Contact is the person; or give Phone (E.164 digits) and optionally
	// LID (digits, or a full "…@lid" JID).
	Contact   *Contact
	Phone     string
	LID       string
	FullName  string
	FirstName string
}

// appStateData is an account's app state on the server: one sync key
// (shared with the companion by the account's phone) and, per collection,
// the list of encoded patches (patch i has version i+1).
type appStateData struct {
	mu          sync.Mutex // serialises encoding
	keyID       []byte
	keyData     []byte
	created     time.Time
	store       *memAppState
	proc        *appstate.Processor
	collections map[appstate.WAPatchName]*collection
	sharedWith  uint16 // companion device that got the key share (guarded by s.mu)
}

type collection struct {
	state   appstate.HashState
	patches [][]byte
}

func newAppStateData() *appStateData {
	d := &appStateData{
		keyID:       append([]byte{0, 0, 0, 0}, randomBytes(2)...),
		keyData:     randomBytes(32),
		created:     time.Now(),
		collections: map[appstate.WAPatchName]*collection{},
	}
	d.store = &memAppState{keys: map[string]store.AppStateSyncKey{}, versions: map[string]uint64{}, macs: map[string]map[string][]byte{}}
	d.store.keys[hex.EncodeToString(d.keyID)] = store.AppStateSyncKey{Data: d.keyData, Timestamp: d.created.UnixMilli()}
	d.proc = appstate.NewProcessor(&store.Device{AppStateKeys: d.store, AppState: d.store}, waLog.Noop)
	return d
}

// addPatch encodes the mutations as the next patch of the collection, with
// whatsmeow's own encoder (value encryption, index/value MACs, LTHash,
// snapshot and patch MACs), and decodes it back to advance the LTHash
// state and remember the value MACs that later updates of the same index
// must remove. It returns the new version.
func (d *appStateData) addPatch(ctx context.Context, name appstate.WAPatchName, mutations []appstate.MutationInfo) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	col := d.collections[name]
	if col == nil {
		col = &collection{}
		d.collections[name] = col
	}
	raw, err := d.proc.EncodePatch(ctx, d.keyID, col.state, appstate.PatchInfo{Type: name, Mutations: mutations})
	if err != nil {
		return 0, err
	}
	var patch waServerSync.SyncdPatch
	if err = proto.Unmarshal(raw, &patch); err != nil {
		return 0, err
	}
	version := col.state.Version + 1
	patch.Version = &waServerSync.SyncdVersion{Version: proto.Uint64(version)}
	if raw, err = proto.Marshal(&patch); err != nil {
		return 0, err
	}
	_, state, err := d.proc.DecodePatches(ctx, &appstate.PatchList{Name: name, Patches: []*waServerSync.SyncdPatch{&patch}}, col.state, true)
	if err != nil {
		return 0, fmt.Errorf("wafake: own app state patch does not verify: %w", err)
	}
	col.state = state
	col.patches = append(col.patches, raw)
	return version, nil
}

// collectionNode answers one <collection> of a sync request: the patches
// after version (all of them for a snapshot request; the fake never sends
// snapshots, a full sync replays the patches from version 1).
func (d *appStateData) collectionNode(name string, from uint64) waBinary.Node {
	attrs := waBinary.Attrs{"name": name, "version": "0"}
	n := waBinary.Node{Tag: "collection", Attrs: attrs}
	if d == nil {
		return n
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	col := d.collections[appstate.WAPatchName(name)]
	if col == nil {
		return n
	}
	attrs["version"] = fmt.Sprint(col.state.Version)
	var list []waBinary.Node
	for i := from; i < uint64(len(col.patches)); i++ {
		list = append(list, waBinary.Node{Tag: "patch", Content: col.patches[i]})
	}
	if len(list) > 0 {
		n.Content = []waBinary.Node{{Tag: "patches", Content: list}}
	}
	return n
}

func (d *appStateData) keyShare() *waE2E.Message {
	return &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{
		Type: waE2E.ProtocolMessage_APP_STATE_SYNC_KEY_SHARE.Enum(),
		AppStateSyncKeyShare: &waE2E.AppStateSyncKeyShare{Keys: []*waE2E.AppStateSyncKey{{
			KeyID: &waE2E.AppStateSyncKeyId{KeyID: d.keyID},
			KeyData: &waE2E.AppStateSyncKeyData{
				KeyData:     d.keyData,
				Fingerprint: &waE2E.AppStateSyncKeyFingerprint{RawID: proto.Uint32(uint32(d.keyID[5])), CurrentIndex: proto.Uint32(0), DeviceIndexes: []uint32{0}},
				Timestamp:   proto.Int64(d.created.UnixMilli()),
			},
		}}},
	}}
}

func (e AddressBookEntry) jids(s *Server) (pn, lid types.JID, err error) {
	phone, lidUser := e.Phone, e.LID
	if e.Contact != nil {
		phone, lidUser = e.Contact.phone, e.Contact.lid.User
	}
	if lidUser != "" {
		j, perr := types.ParseJID(lidUser)
		if perr != nil || j.Server != types.HiddenUserServer {
			j = types.NewJID(lidUser, types.HiddenUserServer)
		}
		if !isDigits(j.User) {
			return pn, lid, fmt.Errorf("wafake: bad LID %q", e.LID)
		}
		lid = j
	}
	switch {
	case phone != "" && !isDigits(phone):
		return pn, lid, fmt.Errorf("wafake: phone %q is not E.164 digits", phone)
	case phone != "":
		pn = types.NewJID(phone, types.DefaultUserServer)
		if lid.IsEmpty() {
			s.mu.Lock()
			lid = s.userLocked(phone).lid
			s.mu.Unlock()
		}
	case lid.IsEmpty():
		return pn, lid, fmt.Errorf("wafake: address book entry without phone or LID")
	}
	return pn, lid, nil
}

// SetAddressBook puts entries into the account's address book, the app
// state collection critical_unblock_low, as one patch of contact mutations
// (index ["contact", "<phone>@s.whatsapp.net"], ContactAction{FullName,
// FirstName, LidJID}; an entry with only a LID is indexed by the LID).
// Setting an entry again updates it. The encoding is whatsmeow's own
// (appstate.Processor.EncodePatch), with a sync key the account's phone
// shares with the companion: once per companion device, as a
// ProtocolMessage{APP_STATE_SYNC_KEY_SHARE} peer message after the
// client's first login (or right away when it is online); whatsmeow then
// fetches every collection (xmlns w:sync:app:state; the others are empty).
// Entries set later reach an online client through <notification
// type="server_sync">. With EmitAppStateEventsOnFullSync whatsmeow emits
// events.Contact per entry; otherwise it stores the names silently.
func (s *Server) SetAddressBook(accountPhone string, entries ...AddressBookEntry) error {
	ctx := s.ctx
	if !isDigits(accountPhone) {
		return fmt.Errorf("wafake: phone %q is not E.164 digits", accountPhone)
	}
	var muts []appstate.MutationInfo
	for _, e := range entries {
		pn, lid, err := e.jids(s)
		if err != nil {
			return err
		}
		act := &waSyncAction.ContactAction{SaveOnPrimaryAddressbook: proto.Bool(true)}
		if e.FullName != "" {
			act.FullName = proto.String(e.FullName)
		}
		if e.FirstName != "" {
			act.FirstName = proto.String(e.FirstName)
		}
		index := pn
		if pn.IsEmpty() {
			index = lid
		} else if !lid.IsEmpty() {
			act.LidJID = proto.String(lid.String())
		}
		muts = append(muts, appstate.MutationInfo{
			Index:   []string{appstate.IndexContact, index.String()},
			Version: 2,
			Value:   &waSyncAction.SyncActionValue{ContactAction: act},
		})
	}
	s.mu.Lock()
	a := s.accountLocked(accountPhone)
	if a.appState == nil {
		a.appState = newAppStateData()
	}
	d := a.appState
	s.mu.Unlock()
	version, err := d.addPatch(ctx, appstate.WAPatchCriticalUnblockLow, muts)
	if err != nil {
		return err
	}
	s.mu.Lock()
	shared := a.device != 0 && d.sharedWith == a.device
	s.mu.Unlock()
	if shared {
		s.queueStanza(a, waBinary.Node{Tag: "notification", Attrs: waBinary.Attrs{
			"from": types.ServerJID, "id": newID(), "type": "server_sync", "t": fmt.Sprint(time.Now().Unix()),
		}, Content: []waBinary.Node{{Tag: "collection", Attrs: waBinary.Attrs{
			"name": string(appstate.WAPatchCriticalUnblockLow), "version": fmt.Sprint(version),
		}}}})
		return nil
	}
	s.shareAppStateKey(a)
	return nil
}

// shareAppStateKey makes the account's phone send its app state sync key to
// the companion device, once per device, as soon as the fake can encrypt to
// it (the client uploaded its prekeys).
func (s *Server) shareAppStateKey(a *Account) {
	s.mu.Lock()
	d := a.appState
	if d == nil || a.device == 0 || d.sharedWith == a.device ||
		(a.bundle == nil && !a.user.peer.hasSession(a.lidDeviceLocked().SignalAddress())) {
		s.mu.Unlock()
		return
	}
	d.sharedWith = a.device
	s.mu.Unlock()
	if _, err := s.sendFromPhone(s.ctx, a, d.keyShare()); err != nil {
		s.log.Warn().Err(err).Str("phone", a.user.phone).Msg("cannot share the app state key")
		s.mu.Lock()
		d.sharedWith = 0
		s.mu.Unlock()
	}
}

// handleAppStateSync answers <iq xmlns="w:sync:app:state" type="set"><sync>
// with one <collection> per requested one.
func (s *Server) handleAppStateSync(c *conn, n *waBinary.Node) {
	s.mu.Lock()
	var d *appStateData
	if c.acct != nil {
		d = c.acct.appState
	}
	s.mu.Unlock()
	var out []waBinary.Node
	for _, col := range childrenOf(n.GetChildByTag("sync")) {
		if col.Tag != "collection" {
			continue
		}
		var from uint64
		if attrString(&col, "return_snapshot") != "true" {
			_, _ = fmt.Sscan(attrString(&col, "version"), &from)
		}
		out = append(out, d.collectionNode(attrString(&col, "name"), from))
	}
	_ = c.send(iqResult(n, waBinary.Node{Tag: "sync", Content: out}))
}

// memAppState is an in-memory app state key and MAC store for the fake's
// own appstate.Processor.
type memAppState struct {
	mu       sync.Mutex
	keys     map[string]store.AppStateSyncKey
	versions map[string]uint64
	macs     map[string]map[string][]byte // collection → index MAC (hex) → value MAC
}

func (m *memAppState) PutAppStateSyncKey(_ context.Context, id []byte, key store.AppStateSyncKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys[hex.EncodeToString(id)] = key
	return nil
}

func (m *memAppState) GetAppStateSyncKey(_ context.Context, id []byte) (*store.AppStateSyncKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k, ok := m.keys[hex.EncodeToString(id)]; ok {
		return &k, nil
	}
	return nil, nil
}

func (m *memAppState) GetLatestAppStateSyncKeyID(context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id := range m.keys {
		return hex.DecodeString(id)
	}
	return nil, nil
}

func (m *memAppState) PutAppStateVersion(_ context.Context, name string, version uint64, _ [128]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.versions[name] = version
	return nil
}

func (m *memAppState) GetAppStateVersion(_ context.Context, name string) (uint64, [128]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.versions[name], [128]byte{}, nil
}

func (m *memAppState) DeleteAppStateVersion(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.versions, name)
	return nil
}

func (m *memAppState) PutAppStateMutationMACs(_ context.Context, name string, _ uint64, mutations []store.AppStateMutationMAC) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.macs[name] == nil {
		m.macs[name] = map[string][]byte{}
	}
	for _, mm := range mutations {
		m.macs[name][hex.EncodeToString(mm.IndexMAC)] = mm.ValueMAC
	}
	return nil
}

func (m *memAppState) DeleteAppStateMutationMACs(_ context.Context, name string, indexMACs [][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, im := range indexMACs {
		delete(m.macs[name], hex.EncodeToString(im))
	}
	return nil
}

func (m *memAppState) GetAppStateMutationMAC(_ context.Context, name string, indexMAC []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.macs[name][hex.EncodeToString(indexMAC)], nil
}
