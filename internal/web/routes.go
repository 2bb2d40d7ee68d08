package web

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
)

// route is one documented endpoint. Path uses OpenAPI syntax, which for
// these routes is also ServeMux syntax ("/" is served as "/{$}").
type route struct {
	method  string
	path    string
	handler http.Handler
}

func (rt route) pattern() string {
	if rt.path == "/" {
		return rt.method + " /{$}"
	}
	return rt.method + " " + rt.path
}

// routeTable lists every route of the API, in one place. Each one must be
// described in openapi.json (checked by a test).
func (s *Server) routeTable() []route {
	admin := func(h http.HandlerFunc) http.Handler { return s.adminAuth(h) }
	tenant := func(h http.HandlerFunc) http.Handler { return s.mentoradoAuth(h) }
	stream := func(h http.HandlerFunc) http.Handler { return s.streamAuth(h) }
	rs := []route{
		// Admin.
		{"POST", "/v1/admin/mentorados", admin(s.handleCreateMentorado)},
		{"GET", "/v1/admin/mentorados", admin(s.handleListMentorados)},
		{"POST", "/v1/admin/mentorados/{id}/tokens", admin(s.handleRotateToken)},
		{"POST", "/v1/admin/mentorados/{id}/disable", admin(s.handleDisableMentorado)},
		{"POST", "/v1/admin/mentorados/{id}/enable", admin(s.handleEnableMentorado)},
		{"DELETE", "/v1/admin/mentorados/{id}", admin(s.handleDeleteMentorado)},

		// WhatsApp session.
		{"POST", "/v1/whatsapp/connect", tenant(s.handleConnect)},
		{"POST", "/v1/whatsapp/disconnect", tenant(s.handleDisconnect)},
		{"POST", "/v1/whatsapp/logout", tenant(s.handleLogout)},
		{"GET", "/v1/whatsapp/status", tenant(s.handleStatus)},
		{"GET", "/v1/whatsapp/qr.png", tenant(s.handleQRPNG)},
		{"DELETE", "/v1/whatsapp/data", tenant(s.handleClearData)},

		// Messages and conversations.
		{"POST", "/v1/messages", tenant(s.limitSends(s.handleSend))},
		{"POST", "/v1/messages/link-orphans", tenant(s.handleLinkOrphans)},
		{"GET", "/v1/conversations", tenant(s.handleConversations)},
		{"GET", "/v1/conversations/{phone}/messages", tenant(s.handleMessages)},
		{"POST", "/v1/conversations/{phone}/read", tenant(s.limitSends(s.handleRead))},

		// Chats: direct (phone or LID) and groups.
		{"GET", "/v1/chats", tenant(s.handleChats)},
		{"GET", "/v1/chats/{chat}", tenant(s.handleChat)},
		{"GET", "/v1/chats/{chat}/messages", tenant(s.handleChatMessages)},
		{"POST", "/v1/chats/{chat}/read", tenant(s.limitSends(s.handleChatRead))},

		// Settings.
		{"GET", "/v1/settings", tenant(s.handleGetSettings)},
		{"PATCH", "/v1/settings", tenant(s.handlePatchSettings)},

		// Media and actions on messages.
		{"POST", "/v1/media", tenant(s.handleUpload)},
		{"GET", "/v1/messages/{id}/media", tenant(s.handleMessageMedia)},
		{"GET", "/v1/messages/{id}/thumbnail", tenant(s.handleThumbnail)},
		{"POST", "/v1/messages/{id}/reactions", tenant(s.limitSends(s.handleReact))},
		{"PATCH", "/v1/messages/{id}", tenant(s.limitSends(s.handleEdit))},
		{"DELETE", "/v1/messages/{id}", tenant(s.limitSends(s.handleRevoke))},

		// Live streams.
		{"POST", "/v1/stream-tickets", tenant(s.handleStreamTicket)},
		{"GET", "/v1/events", stream(s.handleEvents)},
		{"GET", "/v1/ws", stream(s.handleWS)},

		// Operations.
		{"GET", "/healthz", http.HandlerFunc(s.handleHealthz)},
		{"GET", "/readyz", http.HandlerFunc(s.handleReadyz)},
		{"GET", "/metrics", s.metrics.handler()},
		{"GET", "/openapi.json", http.HandlerFunc(s.handleOpenAPI)},

		// Dashboard.
		{"GET", "/", http.HandlerFunc(s.handleIndex)},
		{"GET", "/assets/{file}", s.assetHandler()},
	}
	// Issue #13: each group of routes lives with its handlers.
	rs = append(rs, s.webhookRoutes()...) // webhooks.go
	rs = append(rs, s.leadRoutes()...)    // leads.go
	rs = append(rs, s.consoleRoutes()...) // console.go
	// Issue #14: campaigns, sending settings and opt-outs.
	rs = append(rs, s.campaignRoutes()...) // campaigns.go
	rs = append(rs, s.sendingRoutes()...)  // sending.go
	// Issue #16: providers; the tenant's view and the operator's.
	rs = append(rs, s.providerRoutes()...)      // provider.go
	rs = append(rs, s.providerAdminRoutes()...) // admin_providers.go
	return rs
}

func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReadyz reports ready when Postgres answers, NATS is connected and
// every RequireReady check passes.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.db.Ready(ctx); err != nil {
		s.writeError(w, r, errorf(http.StatusServiceUnavailable, codeUnavailable, "postgres not ready"))
		return
	}
	if st := s.bus.Status(); st != nats.CONNECTED {
		s.writeError(w, r, errorf(http.StatusServiceUnavailable, codeUnavailable, "nats %s", st))
		return
	}
	for _, check := range s.readyChecks {
		if err := check(ctx); err != nil {
			s.writeError(w, r, errorf(http.StatusServiceUnavailable, codeUnavailable, "%s", err))
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

//go:embed openapi.json
var openAPIDoc []byte

func (s *Server) handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPIDoc)
}

//go:embed assets
var assetsFS embed.FS

func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	b, err := assetsFS.ReadFile("assets/index.html")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; style-src 'self'; script-src 'self'")
	w.Header().Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(b)
}

func (s *Server) assetHandler() http.Handler {
	sub, err := fs.Sub(assetsFS, "assets")
	if err != nil {
		panic(err) // embedded at build time
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		if _, err := fs.Stat(sub, name); errors.Is(err, fs.ErrNotExist) || name == "index.html" || name == "console.html" {
			s.writeError(w, r, errorf(http.StatusNotFound, codeNotFound, "no such asset"))
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + name
		files.ServeHTTP(w, r2)
	})
}
