package api

import (
	"errors"

	"github.com/gofiber/fiber/v3"

	"github.com/exo-nix/exo/appliance/store"
)

// Model store routes: what this node's model directories hold, pulls with their progress
// (also published as store.EventPull events on /api/v1/events), and removal.
//
//	GET    /api/v1/models      {"models": [...], "dirs": [...], "pulls": [...], "problems": [...]}
//	GET    /api/v1/models/:id  one model (and its pulls)
//	POST   /api/v1/models      {"source": "org/repo:file.gguf" | "hf://…" | "https://…" | "model-id",
//	                            "layers": {"first": a, "last": b}, "sha256": "…"} → 202 with the pull
//	DELETE /api/v1/models/:id  cancels its pull, deletes the file, its manifest and partial downloads
func (s *Server) modelRoutes() {
	if s.opt.Models == nil {
		return
	}
	s.app.Get("/api/v1/models", s.storeList)
	s.app.Get("/api/v1/models/:id", s.storeGet)
	s.app.Post("/api/v1/models", s.storePull)
	s.app.Delete("/api/v1/models/:id", s.storeRemove)
}

func (s *Server) storeList(c fiber.Ctx) error {
	st := s.opt.Models
	models, problems := st.Catalog().List()
	msgs := make([]string, 0, len(problems))
	for _, p := range problems {
		msgs = append(msgs, p.Error())
	}
	if models == nil {
		models = []store.Model{}
	}
	return c.JSON(fiber.Map{"models": models, "dirs": st.Dirs(), "pulls": st.Pulls(), "problems": msgs})
}

func (s *Server) storeGet(c fiber.Ctx) error {
	id := c.Params("id")
	var pulls []store.Progress
	for _, p := range s.opt.Models.Pulls() {
		if p.ID == id {
			pulls = append(pulls, p)
		}
	}
	m, err := s.opt.Models.Catalog().Get(id)
	if err != nil {
		if len(pulls) > 0 {
			return c.JSON(fiber.Map{"id": id, "pulls": pulls})
		}
		return s.storeError(c, err)
	}
	return c.JSON(fiber.Map{"id": id, "model": m, "pulls": pulls})
}

func (s *Server) storePull(c fiber.Ctx) error {
	var req store.PullRequest
	if err := decodeStrict(c.Body(), &req); err != nil {
		return s.openAIError(c, err)
	}
	if req.Source == "" {
		return writeError(c, fiber.StatusBadRequest, "invalid_request_error", `"source" is required: org/repo[:file.gguf], hf://org/repo/file.gguf, an https URL or a model id`)
	}
	p, err := s.opt.Models.Start(req, nil)
	if err != nil {
		return s.storeError(c, err)
	}
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"pull": p.Progress()})
}

func (s *Server) storeRemove(c fiber.Ctx) error {
	r, err := s.opt.Models.Remove(c.Params("id"))
	if err != nil {
		return s.storeError(c, err)
	}
	return c.JSON(r)
}

func (s *Server) storeError(c fiber.Ctx, err error) error {
	switch {
	case errors.Is(err, store.ErrBadRef):
		return writeError(c, fiber.StatusBadRequest, "invalid_request_error", err.Error())
	case errors.Is(err, store.ErrNotFound):
		return writeError(c, fiber.StatusNotFound, "not_found_error", err.Error())
	case errors.Is(err, store.ErrReadOnly):
		return writeError(c, fiber.StatusConflict, "read_only_error", err.Error())
	case errors.Is(err, store.ErrNoSpace):
		return writeError(c, fiber.StatusInsufficientStorage, "insufficient_storage", err.Error())
	}
	s.opt.Logger.Error("model store request failed", "err", err)
	return writeError(c, fiber.StatusInternalServerError, "server_error", err.Error())
}
