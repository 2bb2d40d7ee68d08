// Package provider is the seam between zapbus and the WhatsApp providers a
// mentorado's number can run on (issue #16, docs/decisions/0021-providers.md):
// Meta's WhatsApp Cloud API (internal/provider/meta), Z-API
// (internal/provider/zapi) and WhatsApp Web through whatsmeow (the
// connector, internal/connector).
//
// Every provider meets zapbus at the same two contracts: it answers the
// commands on wa.<m>.cmd.<verb> (event.Verb: connect, status, send, …) and
// it publishes the same events (internal/event) on the same subjects, with
// Envelope.Provider saying which one it was. The persister, the notifier,
// the dashboard, webhooks and campaigns never ask which provider a
// mentorado uses.
//
// WhatsApp Web is stateful (a websocket per number, owned by one connector
// through a lease) and is the connector. Meta and Z-API are stateless HTTP
// APIs: their drivers implement Driver below and run in the provider
// gateway (internal/gateway, cmd/gateway), which serves their commands on
// zapbus.provider.<p>.wa.*.cmd.> and their webhooks over HTTP. Like
// mautrix bridgev2's network interface, a driver implements one small
// required interface and, as optional interfaces, the capabilities its
// provider has; the gateway answers not_supported for the rest.
package provider

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/zapbus/zapbus/internal/event"
)

// Account is one mentorado's configuration of one provider, with its
// credentials opened. It never reaches a log: String hides the secrets.
type Account struct {
	Mentorado int64
	Provider  event.Provider
	Meta      *MetaCredentials // Provider == meta
	ZAPI      *ZAPICredentials // Provider == zapi
}

// String names the account without its secrets.
func (a Account) String() string {
	return "mentorado " + itoa(a.Mentorado) + " on " + string(a.Provider)
}

// MetaCredentials configure a number on Meta's WhatsApp Cloud API.
// PhoneNumberID, WABAID and DisplayPhone are not secret (the API shows
// them); AccessToken, AppSecret and VerifyToken are.
type MetaCredentials struct {
	PhoneNumberID string `json:"phone_number_id"`
	WABAID        string `json:"waba_id"`
	DisplayPhone  string `json:"display_phone,omitempty"` // E.164 digits of the number, when known
	AccessToken   string `json:"access_token"`
	AppSecret     string `json:"app_secret"`
	VerifyToken   string `json:"verify_token"`
}

// ZAPICredentials configure a Z-API instance. InstanceID is not secret;
// InstanceToken and ClientToken authenticate zapbus to Z-API;
// WebhookSecret (chosen by zapbus when the instance is configured) is
// what Z-API's webhooks must carry, since Z-API does not sign them.
type ZAPICredentials struct {
	InstanceID    string `json:"instance_id"`
	InstanceToken string `json:"instance_token"`
	ClientToken   string `json:"client_token"`
	WebhookSecret string `json:"webhook_secret"`
}

// Driver is what every gateway-hosted provider implements. Errors are
// *event.CommandError where the caller can act on them (bad_request,
// not_connected, outside_window, rate_limited, unavailable, …); anything
// else is internal.
type Driver interface {
	// Provider names the provider.
	Provider() event.Provider
	// Status asks the provider for the number's state.
	Status(ctx context.Context, acc Account) (event.StatusReply, error)
	// Connect brings the number up where the provider has such a step
	// (Z-API: a QR to scan, through QRPairer) or checks that the
	// credentials work (Meta), and reports the state.
	Connect(ctx context.Context, acc Account, req event.ConnectRequest) (event.StatusReply, error)
	// Disconnect stops using the number without unpairing it where the
	// provider distinguishes the two.
	Disconnect(ctx context.Context, acc Account) (event.StatusReply, error)
	// Logout unpairs the number (Z-API) or forgets the session.
	Logout(ctx context.Context, acc Account) (event.StatusReply, error)
	// Send sends one message and returns it as sent (Direction out,
	// Status sent, WAID the provider's message id). A kind the provider
	// cannot send is not_supported. req was validated by the caller.
	Send(ctx context.Context, acc Account, req SendRequest) (*event.Message, error)
	// Webhook turns one webhook delivery for acc into what it reports.
	// It checks the delivery's authenticity first (Meta: the
	// X-Hub-Signature-256 over body with the app secret; Z-API: the
	// secret) and returns ErrUnauthenticated when it fails, or an
	// *event.Error / ErrBadPayload for a payload it cannot read. Nothing
	// is published by the driver: the gateway publishes Inbound and
	// answers the provider only after JetStream stored it.
	Webhook(ctx context.Context, acc Account, r *http.Request, body []byte) (*Inbound, error)
}

// SendRequest is a send command as a driver sees it: the command with the
// recipient resolved and, for media, the file opened from the media store.
type SendRequest struct {
	event.SendRequest
	// To is the recipient's phone in E.164 digits (groups and LIDs are
	// WhatsApp Web only: the gateway answers not_supported before).
	To string
	// ChatJID is To as a WhatsApp JID, <digits>@s.whatsapp.net: the chat
	// the sent message belongs to.
	ChatJID string
	// Media is the file of a media send (nil otherwise).
	Media *MediaFile
	// ReplyToID is the provider's id of the quoted message (req.ReplyTo).
	ReplyToID string
}

// MediaFile is a stored file to send.
type MediaFile struct {
	ID   string // media store id (sha256 hex)
	MIME string
	Size int64
	Data []byte
}

// Inbound is what one webhook delivery reports: events to publish
// (messages, receipts, contacts, connection changes, QR codes) in order,
// and files to fetch from the provider into the media store before the
// events that mention them are published.
type Inbound struct {
	Events []event.Envelope
	// Media lists the files to fetch; each one's message event in Events
	// gets its Media.ID filled once the file is stored (the gateway does
	// that and adds the media event).
	Media []MediaRef
	// Rejected says why parts of the delivery were dropped (e.g. an entry
	// for a number that is not this mentorado's): the gateway records it
	// as webhook health and still answers 200 for the rest.
	Rejected []string
}

// MediaRef is a file a provider holds for a received message.
type MediaRef struct {
	WAID    string     // the message
	ChatJID string     // its chat
	Kind    event.Kind // its kind
	// ProviderID is the provider's media id (Meta) and URL its direct
	// address (Z-API); the driver's MediaFetcher reads whichever it set.
	ProviderID string
	URL        string
	MIME       string
	FileName   string
	Caption    string
}

// Optional capabilities.

// QRPairer is a provider that pairs a number by QR code (Z-API): the
// gateway publishes each code as a qr event, so the dashboard's QR card
// works unchanged.
type QRPairer interface {
	QR(ctx context.Context, acc Account) (code string, expiresAt time.Time, err error)
}

// PhonePairer is a provider that pairs a number by a code typed on the
// phone.
type PhonePairer interface {
	PairingCode(ctx context.Context, acc Account, phone string) (code string, err error)
}

// MediaFetcher fetches a received file from the provider.
type MediaFetcher interface {
	FetchMedia(ctx context.Context, acc Account, ref MediaRef, max int64) (data []byte, mime string, err error)
}

// Reactor reacts to a message ("" removes the reaction).
type Reactor interface {
	React(ctx context.Context, acc Account, req event.ActionRequest) (*event.Message, error)
}

// Editor edits a message the mentorado sent.
type Editor interface {
	Edit(ctx context.Context, acc Account, req event.ActionRequest) (*event.Message, error)
}

// Revoker deletes a message for everyone.
type Revoker interface {
	Revoke(ctx context.Context, acc Account, req event.ActionRequest) (*event.Message, error)
}

// Reader sends read receipts.
type Reader interface {
	MarkRead(ctx context.Context, acc Account, req event.ReadRequest) error
}

// Verifier answers a provider's webhook verification handshake (Meta's
// GET with hub.mode=subscribe, hub.verify_token and hub.challenge): the
// body to answer with, or ErrUnauthenticated.
type Verifier interface {
	VerifyWebhook(acc Account, query map[string][]string) (challenge string, err error)
}

// Windowed is a provider that delivers free-form messages only to chats
// that wrote within Window (Meta: the 24-hour customer-service window);
// outside it only templates go. The gateway refuses other sends up front
// with outside_window.
type Windowed interface {
	Window() time.Duration
}

// Errors of Webhook and VerifyWebhook.
var (
	ErrUnauthenticated = &event.CommandError{Code: "unauthenticated", Message: "webhook authenticity check failed"}
	ErrBadPayload      = &event.CommandError{Code: event.CodeBadRequest, Message: "webhook payload not understood"}
)

// Settings returns the non-secret part of acc's credentials, as the API
// shows it and provider_configs.settings stores it.
func Settings(acc Account) json.RawMessage {
	var v any
	switch {
	case acc.Meta != nil:
		v = map[string]string{"phone_number_id": acc.Meta.PhoneNumberID, "waba_id": acc.Meta.WABAID, "display_phone": acc.Meta.DisplayPhone}
	case acc.ZAPI != nil:
		v = map[string]string{"instance_id": acc.ZAPI.InstanceID}
	default:
		return json.RawMessage(`{}`)
	}
	b, _ := json.Marshal(v)
	return b
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
