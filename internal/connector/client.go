package connector

import (
	"context"
	"errors"

	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
)

// Client is the part of *whatsmeow.Client a session uses. The production
// factory returns the real client; tests and the dev stack's sim mode use
// internal/connector/sim, which emits the same whatsmeow event structs.
type Client interface {
	Connect() error
	Disconnect()
	Logout(ctx context.Context) error
	IsConnected() bool
	IsLoggedIn() bool
	AddEventHandlerWithSuccessStatus(handler whatsmeow.EventHandlerWithSuccessStatus) uint32
	RemoveEventHandler(id uint32) bool
	GetQRChannel(ctx context.Context) (<-chan whatsmeow.QRChannelItem, error)
	PairPhone(ctx context.Context, phone string, showPushNotification bool, clientType whatsmeow.PairClientType, clientDisplayName string) (string, error)
	// GetGroupInfo fetches a group's subject, description and
	// participants: the snapshot of a group event (groups.go).
	GetGroupInfo(ctx context.Context, jid types.JID) (*types.GroupInfo, error)
	IsOnWhatsApp(ctx context.Context, phones []string) ([]types.IsOnWhatsAppResponse, error)
	GenerateMessageID() types.MessageID
	SendMessage(ctx context.Context, to types.JID, message *waE2E.Message, extra ...whatsmeow.SendRequestExtra) (whatsmeow.SendResponse, error)
}

var _ Client = (*whatsmeow.Client)(nil)

// ErrNoDevice is returned by Factory.NewClient when the device a mentorado
// was paired with no longer exists in the device store.
var ErrNoDevice = errors.New("connector: device not in store")

// ClientParams describe the client a session needs.
type ClientParams struct {
	Mentorado int64
	// Device is the paired device JID, empty for a new device (pairing).
	Device types.JID
	// PrePair is called before a pairing completes; returning false refuses
	// the pairing (the number belongs to another mentorado). The factory
	// must wire it to whatsmeow's PrePairCallback.
	PrePair func(jid types.JID) bool
	Log     zerolog.Logger
}

// Factory makes clients. The real one (WhatsmeowFactory) configures
// *whatsmeow.Client for zapbus: synchronous acks, the decrypted event
// buffer and no built-in reconnects (sessions own the policy).
type Factory interface {
	NewClient(ctx context.Context, p ClientParams) (Client, error)
	// DeleteDevice removes a device's credentials and keys. It is
	// idempotent: deleting a missing device is not an error.
	DeleteDevice(ctx context.Context, device types.JID) error
}
