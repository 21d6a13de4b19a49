package api

import (
	"github.com/gofiber/fiber/v3"

	"github.com/exo-nix/exo/appliance/buildinfo"
)

// localNode describes the node answering: build, roles' readiness and the hardware detection
// report (the same document as `exo detect --json`).
func (s *Server) localNode(c fiber.Ctx) error {
	bi := buildinfo.Get()
	var detection any
	if s.opt.Detection != nil {
		detection = s.opt.Detection()
	}
	roles := map[string]RoleStatus{}
	if s.opt.Readiness != nil {
		roles = s.opt.Readiness()
	}
	return c.JSON(fiber.Map{"name": s.opt.NodeName, "version": bi.Version, "commit": bi.Commit, "roles": roles, "detection": detection})
}
