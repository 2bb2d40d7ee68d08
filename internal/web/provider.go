package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

// The mentorado's WhatsApp provider as the tenant sees it (issue #16,
// docs/api.md#whatsapp-provider): which provider is active, and for each
// configured one its non-secret settings and, for the providers that
// reach zapbus by webhook (Meta, Z-API), the health of those webhooks.
// Credentials are configured by the operator (admin routes) and never
// leave the database here: this file reads provider_configs but never its
// sealed column or key id.

func (s *Server) providerRoutes() []route {
	return []route{
		{"GET", "/v1/whatsapp/provider", s.mentoradoAuth(s.handleProvider)},
	}
}

// publicSettings lists, per provider, the settings keys the API shows.
// Anything else in provider_configs.settings stays in the database, so a
// key added there later is not published by accident.
var publicSettings = map[event.Provider][]string{
	event.ProviderMeta: {"phone_number_id", "waba_id", "display_phone"},
	event.ProviderZAPI: {"instance_id"},
}

// apiProviderWebhook is the health of a provider's webhooks to zapbus:
// when the last one was accepted, and the last one refused and why.
type apiProviderWebhook struct {
	LastAt      *time.Time `json:"last_at"`
	LastError   *string    `json:"last_error"`
	LastErrorAt *time.Time `json:"last_error_at"`
}

type apiTenantProvider struct {
	Provider event.Provider      `json:"provider"`
	Active   bool                `json:"active"`
	Settings map[string]string   `json:"settings"`
	Webhook  *apiProviderWebhook `json:"webhook,omitempty"`
}

type providerResponse struct {
	// Active is null when no provider is configured (the connector then
	// serves the mentorado on WhatsApp Web, as before issue #16).
	Active    *event.Provider     `json:"active"`
	Providers []apiTenantProvider `json:"providers"`
}

// fromProviderRows is the API's view of a mentorado's provider rows and
// override: the active one by event.PickProvider, settings filtered to
// publicSettings. It reads no credential field of the rows.
func fromProviderRows(rows []store.ProviderRow, override event.Provider) providerResponse {
	configured := make([]event.Provider, 0, len(rows))
	for _, r := range rows {
		configured = append(configured, r.Provider)
	}
	active := event.PickProvider(configured, override)
	out := providerResponse{Providers: []apiTenantProvider{}}
	if active != "" {
		out.Active = &active
	}
	for _, r := range rows {
		p := apiTenantProvider{Provider: r.Provider, Active: r.Provider == active, Settings: map[string]string{}}
		var all map[string]any
		if len(r.Settings) > 0 && json.Unmarshal(r.Settings, &all) == nil {
			for _, k := range publicSettings[r.Provider] {
				if v, ok := all[k].(string); ok && v != "" {
					p.Settings[k] = v
				}
			}
		}
		if r.Provider == event.ProviderMeta || r.Provider == event.ProviderZAPI {
			wh := &apiProviderWebhook{LastAt: utcPtr(r.LastWebhookAt), LastErrorAt: utcPtr(r.LastWebhookErrorAt)}
			if r.LastWebhookError != "" {
				e := r.LastWebhookError
				wh.LastError = &e
			}
			p.Webhook = wh
		}
		out.Providers = append(out.Providers, p)
	}
	return out
}

// handleProvider answers GET /v1/whatsapp/provider for the token's
// mentorado.
func (s *Server) handleProvider(w http.ResponseWriter, r *http.Request) {
	rows, override, err := s.db.Providers().List(r.Context(), mustMentorado(r))
	if errors.Is(err, store.ErrNotFound) { // deleted after authenticating
		s.writeError(w, r, errorf(http.StatusNotFound, event.CodeUnknown, "no such mentorado"))
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, fromProviderRows(rows, override))
}
