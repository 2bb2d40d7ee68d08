package waconv

import (
	"context"

	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/event"
)

// Action is what the connector does with one whatsmeow event.
type Action int

const (
	// Unknown: the registry has no decision for the type, e.g. one a newer
	// whatsmeow added. The connector counts and logs it; a test fails until
	// the registry decides.
	Unknown Action = iota
	// Publish: Convert turns it into envelopes, which are published before
	// whatsmeow acks the event.
	Publish
	// StateChange: the session's connection state machine reacts to it.
	StateChange
	// Ignore: deliberately not handled; Decision.Reason says why.
	Ignore
	// Media: the session's media download worker consumes it (the
	// sender's phone answering a re-upload request).
	Media
)

func (a Action) String() string {
	switch a {
	case Publish:
		return "publish"
	case StateChange:
		return "state-change"
	case Ignore:
		return "ignore"
	case Media:
		return "media"
	}
	return "unknown"
}

// Decision is the registry's verdict on one whatsmeow event.
type Decision struct {
	Action Action
	// Reason says why an ignored type is ignored.
	Reason string
}

// Decide returns what the connector does with evt. It is the only place
// that lists whatsmeow event types: the session dispatches on it and
// Convert converts exactly the types it marks Publish.
func Decide(evt any) Decision {
	d, _ := route(nil, evt)
	return d
}

// convertFunc converts one event that route marked Publish.
type convertFunc func(ctx context.Context) ([]event.Envelope, error)

// Reasons shared by groups of ignored types.
const (
	ignoreAppState   = "app state: the phone's own chat organisation is not part of the event contract"
	ignoreCall       = "calls are not part of the event contract"
	ignoreQR         = "pairing runs through GetQRChannel, which reports these"
	ignorePresence   = "typing and online status are not part of the event contract"
	ignoreProfile    = "profile pictures and about texts are not part of the event contract"
	ignoreAccount    = "account settings are not part of the event contract"
	ignoreNewsletter = "channels (newsletters) are not CRM conversation"
	ignoreOffline    = "offline-queue progress marker: the queued events themselves are handled"
)

// route is the registry: one decision per whatsmeow event type, and for
// Publish types the conversion (c may be nil when only deciding). A type
// missing here is Unknown; TestRegistryCoversEveryEvent lists every type
// of the pinned whatsmeow and fails on one without a case.
func route(c *Converter, evt any) (Decision, convertFunc) {
	publish := func(f convertFunc) (Decision, convertFunc) { return Decision{Action: Publish}, f }
	state := Decision{Action: StateChange}
	ignore := func(reason string) (Decision, convertFunc) {
		return Decision{Action: Ignore, Reason: reason}, nil
	}
	switch e := evt.(type) {
	// Published: conversations and the people in them.
	case *events.Message:
		return publish(func(ctx context.Context) ([]event.Envelope, error) {
			if e == nil {
				return nil, nil
			}
			return c.message(ctx, e)
		})
	case *events.Receipt:
		return publish(func(ctx context.Context) ([]event.Envelope, error) {
			if e == nil {
				return nil, nil
			}
			return c.receipt(ctx, e)
		})
	case *events.PushName:
		return publish(func(ctx context.Context) ([]event.Envelope, error) {
			if e == nil {
				return nil, nil
			}
			return c.pushName(ctx, e)
		})
	case *events.Contact:
		return publish(func(ctx context.Context) ([]event.Envelope, error) {
			if e == nil {
				return nil, nil
			}
			return c.contact(ctx, e)
		})
	case *events.BusinessName:
		return publish(func(ctx context.Context) ([]event.Envelope, error) {
			if e == nil {
				return nil, nil
			}
			return c.businessName(ctx, e)
		})
	// Groups: every group event is a full snapshot. JoinedGroup carries the
	// group's info; GroupInfo is a delta, so Convert returns nothing for
	// it and the connector fetches the info and builds the snapshot with
	// GroupSnapshot (or, when the number left, republishes the last one).
	case *events.JoinedGroup:
		return publish(func(ctx context.Context) ([]event.Envelope, error) {
			if e == nil {
				return nil, nil
			}
			return c.joinedGroup(ctx, e)
		})
	case *events.GroupInfo:
		return publish(func(context.Context) ([]event.Envelope, error) { return nil, nil })

	// Connection state: the session's reconnect policy
	// (docs/decisions/0002-reconnect-policy.md).
	case *events.Connected, *events.Disconnected, *events.PairSuccess, *events.PairError,
		*events.LoggedOut, *events.StreamReplaced, *events.TemporaryBan, *events.ConnectFailure,
		*events.ClientOutdated, *events.ManualLoginReconnect, *events.KeepAliveTimeout,
		*events.StreamError, *events.CATRefreshError:
		return state, nil

	case *events.KeepAliveRestored:
		return ignore("only keepalive failures matter to the reconnect policy")
	case *events.QR, *events.QRScannedWithoutMultidevice:
		return ignore(ignoreQR)

	case *events.Pin, *events.Star, *events.DeleteForMe, *events.Mute, *events.Archive,
		*events.MarkChatAsRead, *events.ClearChat, *events.DeleteChat, *events.PushNameSetting,
		*events.UnarchiveChatsSetting, *events.UserStatusMute, *events.LabelEdit,
		*events.LabelAssociationChat, *events.LabelAssociationMessage, *events.AppState,
		*events.AppStateSyncComplete:
		return ignore(ignoreAppState)
	case *events.CallOffer, *events.CallAccept, *events.CallPreAccept, *events.CallTransport,
		*events.CallOfferNotice, *events.CallRelayLatency, *events.CallTerminate, *events.CallReject,
		*events.UnknownCallEvent:
		return ignore(ignoreCall)
	case *events.HistorySync:
		return ignore("history sync is not imported: zapbus records traffic from pairing on")
	case *events.UndecryptableMessage:
		return ignore("whatsmeow asks the sender to retry; the decrypted retry arrives as a Message")
	case *events.FBMessage:
		return ignore("Messenger and Instagram (armadillo) messages, not WhatsApp")
	case *events.ChatPresence, *events.Presence:
		return ignore(ignorePresence)
	case *events.Picture, *events.UserAbout:
		return ignore(ignoreProfile)
	case *events.IdentityChange:
		return ignore("security code change: whatsmeow keeps the keys")
	case *events.PrivacySettings, *events.Blocklist, *events.BlocklistChange:
		return ignore(ignoreAccount)
	case *events.OfflineSyncPreview, *events.OfflineSyncCompleted:
		return ignore(ignoreOffline)
	case *events.MediaRetry:
		// The reply to a re-upload request the download worker sent.
		return Decision{Action: Media}, nil
	case *events.NewsletterJoin, *events.NewsletterLeave, *events.NewsletterMuteChange,
		*events.NewsletterLiveUpdate:
		return ignore(ignoreNewsletter)
	}
	return Decision{Action: Unknown}, nil
}
