package web

// The CRM's leads: /v1/leads.
func (s *Server) leadRoutes() []route {
	return nil
}
