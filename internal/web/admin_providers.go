package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/store"
)

// Providers (admin), issue #16 (docs/api.md#providers-admin): which
// providers a mentorado's number runs on, their credentials and which one
// is active. Credentials go in sealed (internal/secretbox) and never come
// back out: not in an answer, not in a log. A Z-API webhook secret is in
// the answer that created or rotated it only.

// Provider API error codes.
const (
	codeProviderInvalid = "invalid_provider_config" // 422: a field of the configuration is wrong (the message names it)
	codeProviderTaken   = "provider_number_taken"   // 409: the number belongs to another mentorado
)

func (s *Server) providerAdminRoutes() []route {
	admin := func(h http.HandlerFunc) http.Handler { return s.adminAuth(h) }
	const p = "/v1/admin/mentorados/{id}/providers"
	return []route{
		{"GET", p, admin(s.handleProvidersGet)},
		{"PUT", p + "/active", admin(s.handleProvidersActive)},
		{"PUT", p + "/{provider}", admin(s.handleProviderPut)},
		{"DELETE", p + "/{provider}", admin(s.handleProviderDelete)},
	}
}

// apiProviders is a mentorado's providers as the admin API shows them.
type apiProviders struct {
	MentoradoID int64           `json:"mentorado_id"`
	Active      *event.Provider `json:"active"`
	Override    *event.Provider `json:"override"`
	Providers   []apiProvider   `json:"providers"`
	// Session is what the WhatsApp Web session did when the change moved
	// the active provider away from it (disconnected first).
	Session *sessionResult `json:"session,omitempty"`
}

type apiProvider struct {
	provider.View
	// WebhookURL is the path of the provider's webhook on the provider
	// gateway: always for meta; for zapi (it holds the secret) only in
	// the answer that created or rotated it.
	WebhookURL string `json:"webhook_url,omitempty"`
}

// apiProviderPut is the answer of PUT …/providers/{provider}.
type apiProviderPut struct {
	apiProvider
	Created bool           `json:"created"`
	Session *sessionResult `json:"session,omitempty"`
}

type metaConfigRequest struct {
	PhoneNumberID string `json:"phone_number_id"`
	WABAID        string `json:"waba_id"`
	DisplayPhone  string `json:"display_phone"`
	AccessToken   string `json:"access_token"`
	AppSecret     string `json:"app_secret"`
	VerifyToken   string `json:"verify_token"`
}

type zapiConfigRequest struct {
	InstanceID          string `json:"instance_id"`
	InstanceToken       string `json:"instance_token"`
	ClientToken         string `json:"client_token"`
	RotateWebhookSecret bool   `json:"rotate_webhook_secret"`
}

type activeProviderRequest struct {
	Provider *string `json:"provider"`
}

func nilIfEmpty(p event.Provider) *event.Provider {
	if p == "" {
		return nil
	}
	return &p
}

// metaWebhookPath and zapiWebhookPath are the provider gateway's webhook
// routes for mentorado m (internal/gateway).
func metaWebhookPath(m int64) string {
	return "/providers/meta/" + strconv.FormatInt(m, 10) + "/webhook"
}

func zapiWebhookPath(m int64, secret string) string {
	return "/providers/zapi/" + strconv.FormatInt(m, 10) + "/webhook/" + secret
}

// pathProvider is the {provider} path value.
func pathProvider(r *http.Request) (event.Provider, error) {
	p := event.Provider(r.PathValue("provider"))
	if !p.Valid() {
		return "", errorf(http.StatusNotFound, codeNotFound, "no provider %q; want meta, whatsapp_web or zapi", r.PathValue("provider"))
	}
	return p, nil
}

func (s *Server) providerOverview(ctx context.Context, m int64) (apiProviders, error) {
	ov, err := s.providers.List(ctx, m)
	if errors.Is(err, store.ErrNotFound) {
		return apiProviders{}, errorf(http.StatusNotFound, codeNotFound, "no mentorado %d", m)
	}
	if err != nil {
		return apiProviders{}, fmt.Errorf("list providers: %w", err)
	}
	out := apiProviders{MentoradoID: m, Active: nilIfEmpty(ov.Active), Override: nilIfEmpty(ov.Override),
		Providers: make([]apiProvider, 0, len(ov.Providers))}
	for _, v := range ov.Providers {
		ap := apiProvider{View: v}
		if v.Provider == event.ProviderMeta {
			ap.WebhookURL = metaWebhookPath(m)
		}
		out.Providers = append(out.Providers, ap)
	}
	return out, nil
}

// handleProvidersGet lists a mentorado's providers, the active one and the
// override, without credentials.
func (s *Server) handleProvidersGet(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := s.providerOverview(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// providerStoreError maps Configs' errors to the API's.
func providerStoreError(m int64, err error) error {
	var fe *provider.FieldError
	switch {
	case errors.As(err, &fe):
		return errorf(http.StatusUnprocessableEntity, codeProviderInvalid, "%s %s", fe.Field, fe.Message)
	case errors.Is(err, store.ErrExternalIDTaken):
		return errorf(http.StatusConflict, codeProviderTaken, "this provider number is configured for another mentorado")
	case errors.Is(err, store.ErrNotFound):
		return errorf(http.StatusNotFound, codeNotFound, "no mentorado %d", m)
	case errors.Is(err, provider.ErrNoKeyring):
		return noKeyring()
	case errors.Is(err, provider.ErrNotConfigured):
		return errorf(http.StatusUnprocessableEntity, event.CodeNoProvider, "the mentorado has not configured this provider; configure it first")
	}
	return err
}

func noKeyring() *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Code: codeUnavailable,
		Message: "no credentials keyring is configured on this notifier: set ZAPBUS_CREDENTIALS_KEYS or ZAPBUS_CREDENTIALS_KEYS_FILE (docs/operations.md) to configure meta or zapi"}
}

// leavingWeb says whether a change that leaves the mentorado with the
// providers configured and the override moves its active provider (in
// before) away from WhatsApp Web.
func leavingWeb(before provider.Overview, configured []event.Provider, override event.Provider) bool {
	return before.Active == event.ProviderWeb && event.PickProvider(configured, override) != event.ProviderWeb
}

func configuredOf(ov provider.Overview) []event.Provider {
	ps := make([]event.Provider, 0, len(ov.Providers))
	for _, v := range ov.Providers {
		ps = append(ps, v.Provider)
	}
	return ps
}

// disconnectWeb stops mentorado m's whatsmeow session before its active
// provider moves away from WhatsApp Web: sent to the connector's subject
// while routing still points there (afterwards a connector that does not
// hold the session relays to the provider gateway instead). Best effort:
// the outcome is reported, never fails the change.
func (s *Server) disconnectWeb(ctx context.Context, m int64) *sessionResult {
	_, err := s.commandOn(ctx, event.ProviderWeb, m, event.VerbDisconnect, nil)
	res := &sessionResult{State: string(event.StatusDisconnected)}
	if err != nil {
		var ae *apiError
		res.State, res.Error = "unreachable", "connector did not answer"
		if errors.As(err, &ae) {
			res.Error = ae.Message
			if ae.Status < 500 {
				res.State = "inactive"
			}
		}
	}
	s.log.Info().Int64("mentorado", m).Str("session", res.State).Msg("disconnect the whatsapp web session: the active provider moves away from it")
	return res
}

// handleProviderPut configures (or replaces) one provider of a mentorado.
func (s *Server) handleProviderPut(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := pathProvider(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	acc := provider.Account{Mentorado: id, Provider: p}
	rotate := false
	switch p {
	case event.ProviderMeta:
		var req metaConfigRequest
		if err := s.decodeJSON(w, r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
		acc.Meta = &provider.MetaCredentials{PhoneNumberID: req.PhoneNumberID, WABAID: req.WABAID, DisplayPhone: req.DisplayPhone,
			AccessToken: req.AccessToken, AppSecret: req.AppSecret, VerifyToken: req.VerifyToken}
	case event.ProviderZAPI:
		var req zapiConfigRequest
		if err := s.decodeJSON(w, r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
		rotate = req.RotateWebhookSecret
		acc.ZAPI = &provider.ZAPICredentials{InstanceID: req.InstanceID, InstanceToken: req.InstanceToken, ClientToken: req.ClientToken}
	default: // whatsapp_web: nothing to configure; the body is empty or {}
		var req struct{}
		if err := s.decodeBody(w, r, &req, true); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if p != event.ProviderWeb && s.cfg.CredentialKeys == nil {
		s.writeError(w, r, noKeyring())
		return
	}
	ov, err := s.providers.List(ctx, id)
	if err != nil {
		s.writeError(w, r, providerStoreError(id, err))
		return
	}
	existed := slices.Contains(configuredOf(ov), p)
	newSecret := false
	if acc.ZAPI != nil {
		// Keep the webhook secret Z-API was given unless asked to rotate
		// (or it cannot be read back).
		if old, err := s.providers.Account(ctx, id, p); existed && !rotate && err == nil && old.ZAPI != nil {
			acc.ZAPI.WebhookSecret = old.ZAPI.WebhookSecret
		} else {
			newSecret = true
		}
	}
	// Validate before anything moves, so a refused body disconnects nothing.
	if err := provider.Validate(acc); err != nil {
		s.writeError(w, r, providerStoreError(id, err))
		return
	}
	var sess *sessionResult
	if conf := configuredOf(ov); leavingWeb(ov, append(conf, p), ov.Override) {
		sess = s.disconnectWeb(ctx, id)
	}
	if err := s.providers.Put(ctx, acc); err != nil {
		s.writeError(w, r, providerStoreError(id, err))
		return
	}
	s.forgetProvider(id)
	s.activeChanged(ctx, id, ov.Active)
	after, err := s.providerOverview(ctx, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := apiProviderPut{Created: !existed, Session: sess}
	for _, v := range after.Providers {
		if v.Provider == p {
			out.apiProvider = v
		}
	}
	if newSecret {
		out.WebhookURL = zapiWebhookPath(id, acc.ZAPI.WebhookSecret)
	}
	s.log.Info().Int64("mentorado", id).Str("provider", string(p)).Bool("created", !existed).
		Bool("webhook_secret_rotated", newSecret && existed).Msg("provider configured")
	status := http.StatusOK
	if !existed {
		status = http.StatusCreated
	}
	writeJSON(w, status, out)
}

// handleProviderDelete removes one provider of a mentorado.
func (s *Server) handleProviderDelete(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := pathProvider(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	ov, err := s.providers.List(ctx, id)
	if err != nil {
		s.writeError(w, r, providerStoreError(id, err))
		return
	}
	conf := configuredOf(ov)
	if !slices.Contains(conf, p) {
		s.writeError(w, r, errorf(http.StatusNotFound, codeNotFound, "mentorado %d has no %s configuration", id, p))
		return
	}
	if leavingWeb(ov, slices.DeleteFunc(slices.Clone(conf), func(c event.Provider) bool { return c == p }), ov.Override) {
		s.disconnectWeb(ctx, id)
	}
	ok, err := s.providers.Delete(ctx, id, p)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("delete provider: %w", err))
		return
	}
	s.forgetProvider(id)
	if !ok {
		s.writeError(w, r, errorf(http.StatusNotFound, codeNotFound, "mentorado %d has no %s configuration", id, p))
		return
	}
	s.activeChanged(ctx, id, ov.Active)
	s.log.Info().Int64("mentorado", id).Str("provider", string(p)).Msg("provider removed")
	w.WriteHeader(http.StatusNoContent)
}

// handleProvidersActive sets ({"provider": "meta"}) or clears
// ({"provider": null}) the admin's choice of active provider.
func (s *Server) handleProvidersActive(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req activeProviderRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	var p event.Provider
	if req.Provider != nil {
		p = event.Provider(*req.Provider)
		if !p.Valid() {
			s.writeError(w, r, errorf(http.StatusUnprocessableEntity, codeProviderInvalid, "provider must be meta, whatsapp_web, zapi or null"))
			return
		}
	}
	ctx := r.Context()
	ov, err := s.providers.List(ctx, id)
	if err != nil {
		s.writeError(w, r, providerStoreError(id, err))
		return
	}
	if p != "" && !slices.Contains(configuredOf(ov), p) {
		s.writeError(w, r, providerStoreError(id, provider.ErrNotConfigured))
		return
	}
	var sess *sessionResult
	if leavingWeb(ov, configuredOf(ov), p) {
		sess = s.disconnectWeb(ctx, id)
	}
	if err := s.providers.SetOverride(ctx, id, p); err != nil {
		s.writeError(w, r, providerStoreError(id, err))
		return
	}
	s.forgetProvider(id)
	s.activeChanged(ctx, id, ov.Active)
	out, err := s.providerOverview(ctx, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out.Session = sess
	s.log.Info().Int64("mentorado", id).Str("override", string(p)).Str("active", string(derefProvider(out.Active))).Msg("active provider set")
	writeJSON(w, http.StatusOK, out)
}

// activeChanged runs after a configuration change of mentorado m whose
// active provider was before: when the active provider is now another,
// the stored session status (the previous provider's) is forgotten —
// disconnected, "active provider changed to …" — and a gateway-hosted
// new provider is asked for its status, which the gateway publishes as a
// connection event when it differs. Best effort: the change is made.
func (s *Server) activeChanged(ctx context.Context, m int64, before event.Provider) {
	after, err := s.db.Providers().Active(ctx, m)
	if err != nil || after == before {
		return
	}
	name := string(after)
	if after == "" {
		name = "none"
	}
	if err := s.db.Mentorados().ProviderChanged(ctx, m, "active provider changed to "+name); err != nil {
		s.log.Warn().Err(err).Int64("mentorado", m).Msg("reset the stored status after a provider change")
		return
	}
	if after == event.ProviderMeta || after == event.ProviderZAPI {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := s.command(sctx, m, event.VerbStatus, nil); err != nil {
			s.log.Info().Err(err).Int64("mentorado", m).Str("provider", name).Msg("status of the new active provider not known yet")
		}
	}
}

func derefProvider(p *event.Provider) event.Provider {
	if p == nil {
		return ""
	}
	return *p
}
