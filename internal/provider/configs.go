package provider

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/secretbox"
	"github.com/zapbus/zapbus/internal/store"
)

// Configs reads and writes mentorados' provider configurations, sealing
// credentials with the keyring on the way in and opening them on the way
// out. The sealed credentials are bound (AES-GCM additional data) to their
// row, "zapbus:provider:<mentorado>:<provider>": a sealed blob copied to
// another mentorado's row does not open.
type Configs struct {
	db   *store.DB
	keys *secretbox.Keyring
}

// NewConfigs returns the configurations in db, sealed with keys (nil
// keys: only whatsapp_web can be configured; reading a sealed account
// fails with a clear error).
func NewConfigs(db *store.DB, keys *secretbox.Keyring) *Configs { return &Configs{db: db, keys: keys} }

// ErrNoKeyring is returned when a provider's credentials must be sealed or
// opened and no credentials keyring is configured.
var ErrNoKeyring = errors.New("provider: no credentials keyring configured (set ZAPBUS_CREDENTIALS_KEYS or ZAPBUS_CREDENTIALS_KEYS_FILE)")

// ErrNotConfigured is returned by SetOverride for a provider the mentorado
// has not configured.
var ErrNotConfigured = errors.New("provider: the mentorado has not configured this provider")

// FieldError is an invalid configuration field; Field names it as the API
// does (e.g. "phone_number_id"). It never carries the field's value.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// AAD is the additional data the credentials of (m, p) are sealed with.
func AAD(m int64, p event.Provider) []byte {
	return []byte("zapbus:provider:" + strconv.FormatInt(m, 10) + ":" + string(p))
}

// Active returns mentorado m's active provider ("" when none is
// configured: the connector then serves it, as before issue #16).
func (c *Configs) Active(ctx context.Context, m int64) (event.Provider, error) {
	return c.db.Providers().Active(ctx, m)
}

// Account returns mentorado m's configuration of p with its credentials
// opened (store.ErrNotFound when p is not configured). A whatsapp_web
// account has no credentials.
func (c *Configs) Account(ctx context.Context, m int64, p event.Provider) (Account, error) {
	row, err := c.db.Providers().Get(ctx, m, p)
	if err != nil {
		return Account{}, err
	}
	acc := Account{Mentorado: m, Provider: p}
	if p == event.ProviderWeb {
		return acc, nil
	}
	if row.Sealed == nil {
		return Account{}, fmt.Errorf("provider: %s has no credentials stored", acc)
	}
	if c.keys == nil {
		return Account{}, ErrNoKeyring
	}
	plain, err := c.keys.Open(row.Sealed, row.KeyID, AAD(m, p))
	if err != nil {
		return Account{}, fmt.Errorf("provider: open credentials of %s: %w", acc, err)
	}
	switch p {
	case event.ProviderMeta:
		acc.Meta = &MetaCredentials{}
		err = json.Unmarshal(plain, acc.Meta)
	case event.ProviderZAPI:
		acc.ZAPI = &ZAPICredentials{}
		err = json.Unmarshal(plain, acc.ZAPI)
	default:
		err = fmt.Errorf("unknown provider %q", p)
	}
	if err != nil {
		// json errors may quote the input: never wrap them.
		return Account{}, fmt.Errorf("provider: credentials of %s do not decode", acc)
	}
	return acc, nil
}

// Validate checks acc's credentials for its provider; the error is a
// *FieldError naming the first bad field.
func Validate(acc Account) error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
	}
	if acc.Mentorado <= 0 {
		return bad("mentorado", "must be a positive id")
	}
	switch acc.Provider {
	case event.ProviderWeb:
		if acc.Meta != nil || acc.ZAPI != nil {
			return bad("provider", "whatsapp_web takes no credentials")
		}
	case event.ProviderMeta:
		m := acc.Meta
		if m == nil || acc.ZAPI != nil {
			return bad("provider", "meta needs Meta credentials")
		}
		for _, f := range []struct{ name, v string }{{"phone_number_id", m.PhoneNumberID}, {"waba_id", m.WABAID}} {
			if !allDigits(f.v, 1, 32) {
				return bad(f.name, "must be Meta's numeric id (digits only)")
			}
		}
		if m.DisplayPhone != "" && !allDigits(m.DisplayPhone, 8, 15) {
			return bad("display_phone", "must be the number in E.164 digits, without + (8 to 15 digits)")
		}
		for _, f := range []struct{ name, v string }{{"access_token", m.AccessToken}, {"app_secret", m.AppSecret}, {"verify_token", m.VerifyToken}} {
			if err := checkSecret(f.name, f.v); err != nil {
				return err
			}
		}
	case event.ProviderZAPI:
		z := acc.ZAPI
		if z == nil || acc.Meta != nil {
			return bad("provider", "zapi needs Z-API credentials")
		}
		if !idChars(z.InstanceID, 128) {
			return bad("instance_id", "must be Z-API's instance id (1 to 128 of A-Z a-z 0-9 _ -)")
		}
		for _, f := range []struct{ name, v string }{{"instance_token", z.InstanceToken}, {"client_token", z.ClientToken}} {
			if err := checkSecret(f.name, f.v); err != nil {
				return err
			}
		}
		if z.WebhookSecret != "" && !idChars(z.WebhookSecret, 128) {
			return bad("webhook_secret", "must be 1 to 128 of A-Z a-z 0-9 _ -")
		}
	default:
		return bad("provider", "must be meta, whatsapp_web or zapi")
	}
	return nil
}

// checkSecret requires a token: non-blank, printable, no spaces, bounded.
func checkSecret(field, v string) error {
	switch {
	case strings.TrimSpace(v) == "":
		return &FieldError{Field: field, Message: "is required"}
	case len(v) > 4096 || !utf8.ValidString(v) || strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return &FieldError{Field: field, Message: "must be at most 4096 printable characters without spaces"}
	}
	return nil
}

func allDigits(s string, minLen, maxLen int) bool {
	if len(s) < minLen || len(s) > maxLen {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func idChars(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// NewWebhookSecret returns a fresh Z-API webhook secret: 32 random bytes,
// unpadded base64url.
func NewWebhookSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("provider: webhook secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Put validates acc (*FieldError), seals its credentials and stores it,
// replacing an earlier configuration of the same provider. A Z-API
// account without a WebhookSecret gets a fresh one, written into
// acc.ZAPI so the caller can show it once. Errors: ErrNoKeyring for
// meta/zapi without a keyring, store.ErrExternalIDTaken when another
// mentorado has the number, store.ErrNotFound when the mentorado does not
// exist.
func (c *Configs) Put(ctx context.Context, acc Account) error {
	if acc.Provider == event.ProviderZAPI && acc.ZAPI != nil && acc.ZAPI.WebhookSecret == "" {
		secret, err := NewWebhookSecret()
		if err != nil {
			return err
		}
		acc.ZAPI.WebhookSecret = secret
	}
	if err := Validate(acc); err != nil {
		return err
	}
	row := store.ProviderRow{MentoradoID: acc.Mentorado, Provider: acc.Provider, Settings: Settings(acc)}
	var creds any
	switch acc.Provider {
	case event.ProviderMeta:
		creds, row.ExternalID = acc.Meta, acc.Meta.PhoneNumberID
	case event.ProviderZAPI:
		creds, row.ExternalID = acc.ZAPI, acc.ZAPI.InstanceID
	}
	if creds != nil {
		if c.keys == nil {
			return ErrNoKeyring
		}
		plain, err := json.Marshal(creds)
		if err != nil {
			return fmt.Errorf("provider: encode credentials: %w", err)
		}
		row.Sealed, row.KeyID, err = c.keys.Seal(plain, AAD(acc.Mentorado, acc.Provider))
		if err != nil {
			return fmt.Errorf("provider: seal credentials: %w", err)
		}
	}
	return c.db.Providers().Put(ctx, row)
}

// Delete removes mentorado m's configuration of p; false when there was
// none.
func (c *Configs) Delete(ctx context.Context, m int64, p event.Provider) (bool, error) {
	return c.db.Providers().Delete(ctx, m, p)
}

// SetOverride makes p mentorado m's active provider whatever the priority
// rule says (p == "" returns to the rule). ErrNotConfigured when m has
// not configured p; store.ErrNotFound when m does not exist.
func (c *Configs) SetOverride(ctx context.Context, m int64, p event.Provider) error {
	if p != "" {
		if !p.Valid() {
			return ErrNotConfigured
		}
		if _, err := c.db.Providers().Get(ctx, m, p); errors.Is(err, store.ErrNotFound) {
			if _, _, lerr := c.db.Providers().List(ctx, m); errors.Is(lerr, store.ErrNotFound) {
				return store.ErrNotFound
			}
			return ErrNotConfigured
		} else if err != nil {
			return err
		}
	}
	return c.db.Providers().SetOverride(ctx, m, p)
}

// View is one configured provider as the admin API shows it: never a
// secret.
type View struct {
	Provider  event.Provider  `json:"provider"`
	Active    bool            `json:"active"`
	Settings  json.RawMessage `json:"settings"`
	Webhook   WebhookHealth   `json:"webhook"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// WebhookHealth is what the provider gateway recorded of a provider's
// webhooks: the last accepted delivery and the last rejected one, with why.
type WebhookHealth struct {
	LastAt      *time.Time `json:"last_at"`
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
}

// Overview is a mentorado's providers: the active one ("" none), the
// admin's override ("" the priority rule) and each configured provider.
type Overview struct {
	Active    event.Provider
	Override  event.Provider
	Providers []View
}

// List returns mentorado m's providers without secrets (store.ErrNotFound
// when m does not exist).
func (c *Configs) List(ctx context.Context, m int64) (Overview, error) {
	rows, override, err := c.db.Providers().List(ctx, m)
	if err != nil {
		return Overview{}, err
	}
	configured := make([]event.Provider, len(rows))
	for i, r := range rows {
		configured[i] = r.Provider
	}
	ov := Overview{Active: event.PickProvider(configured, override), Override: override, Providers: make([]View, 0, len(rows))}
	for _, r := range rows {
		settings := r.Settings
		if len(settings) == 0 {
			settings = json.RawMessage(`{}`)
		}
		ov.Providers = append(ov.Providers, View{Provider: r.Provider, Active: r.Provider == ov.Active, Settings: settings,
			Webhook:   WebhookHealth{LastAt: utc(r.LastWebhookAt), LastError: r.LastWebhookError, LastErrorAt: utc(r.LastWebhookErrorAt)},
			CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()})
	}
	return ov, nil
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// Rekey re-seals with the primary key every stored credential sealed
// under another key and returns how many it re-sealed (after a rotation:
// prepend the new key, restart, rekey, then drop the old key). A row
// changed meanwhile is left as its writer sealed it (with the primary).
func (c *Configs) Rekey(ctx context.Context) (int, error) {
	if c.keys == nil {
		return 0, ErrNoKeyring
	}
	primary := c.keys.Primary()
	rows, err := c.db.Providers().Sealed(ctx, primary)
	if err != nil {
		return 0, fmt.Errorf("provider: rekey: %w", err)
	}
	n := 0
	for _, r := range rows {
		aad := AAD(r.MentoradoID, r.Provider)
		plain, err := c.keys.Open(r.Sealed, r.KeyID, aad)
		if err != nil {
			return n, fmt.Errorf("provider: rekey mentorado %d on %s (key %q): %w", r.MentoradoID, r.Provider, r.KeyID, err)
		}
		sealed, keyID, err := c.keys.Seal(plain, aad)
		if err != nil {
			return n, fmt.Errorf("provider: rekey: %w", err)
		}
		ok, err := c.db.Providers().Reseal(ctx, r.MentoradoID, r.Provider, r.KeyID, sealed, keyID)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}
