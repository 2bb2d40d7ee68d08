package web

// The operator console: /admin and its admin API.
func (s *Server) consoleRoutes() []route {
	return nil
}
