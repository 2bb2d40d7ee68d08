package provider

import (
	"context"
	"errors"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/secretbox"
	"github.com/zapbus/zapbus/internal/store"
)

// SCAFFOLD: signatures fixed by the issue #16 scaffold; the helper that
// owns provider configuration replaces the bodies.

// Configs reads and writes mentorados' provider configurations, sealing
// credentials with the keyring on the way in and opening them on the way
// out.
type Configs struct {
	db   *store.DB
	keys *secretbox.Keyring
}

// NewConfigs returns the configurations in db, sealed with keys (nil
// keys: only whatsapp_web can be configured; reading a sealed account
// fails with a clear error).
func NewConfigs(db *store.DB, keys *secretbox.Keyring) *Configs { return &Configs{db: db, keys: keys} }

// Active returns mentorado m's active provider ("" when none is
// configured: the connector then serves it, as before issue #16).
func (c *Configs) Active(ctx context.Context, m int64) (event.Provider, error) {
	return c.db.Providers().Active(ctx, m)
}

// Account returns mentorado m's configuration of p with its credentials
// opened (store.ErrNotFound when p is not configured).
func (c *Configs) Account(ctx context.Context, m int64, p event.Provider) (Account, error) {
	return Account{}, errors.New("provider: not implemented")
}

// Put stores acc (sealing its credentials).
func (c *Configs) Put(ctx context.Context, acc Account) error {
	return errors.New("provider: not implemented")
}
