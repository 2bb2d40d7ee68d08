package web

// Webhook endpoints: /v1/webhooks (tenant) and /v1/admin/webhooks (admin-level).
func (s *Server) webhookRoutes() []route {
	return nil
}
