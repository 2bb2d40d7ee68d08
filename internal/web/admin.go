package web

import (
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

type createMentoradoRequest struct {
	Name string `json:"name"`
}

type tokenResponse struct {
	ID    int64  `json:"id"`
	Token string `json:"token"`
}

// handleCreateMentorado creates a tenant and its first API token, shown once.
func (s *Server) handleCreateMentorado(w http.ResponseWriter, r *http.Request) {
	var req createMentoradoRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	name := strings.TrimSpace(req.Name)
	if name == "" || utf8.RuneCountInString(name) > 200 {
		s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "name must be 1 to 200 characters"))
		return
	}
	token, hash, err := newToken()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var id int64
	err = s.db.Pool.QueryRow(r.Context(),
		`INSERT INTO mentorados (name, token_hash, token_created_at) VALUES ($1, $2, now()) RETURNING id`,
		name, hash).Scan(&id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info().Int64("mentorado", id).Msg("mentorado created")
	writeJSON(w, http.StatusCreated, tokenResponse{ID: id, Token: token})
}

// handleRotateToken replaces a mentorado's token; the old one stops working
// at once, and so do stream tickets issued with it.
func (s *Server) handleRotateToken(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "id must be a positive integer"))
		return
	}
	token, hash, err := newToken()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	tag, err := s.db.Pool.Exec(r.Context(),
		`UPDATE mentorados SET token_hash = $2, token_created_at = now() WHERE id = $1`, id, hash)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if tag.RowsAffected() == 0 {
		s.writeError(w, r, errorf(http.StatusNotFound, codeNotFound, "no mentorado %d", id))
		return
	}
	s.log.Info().Int64("mentorado", id).Msg("mentorado token rotated")
	writeJSON(w, http.StatusCreated, tokenResponse{ID: id, Token: token})
}
