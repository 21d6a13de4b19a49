package api

import (
	"io/fs"
	"strings"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/static"
)

// mountDashboard serves the built frontend. Unknown non-API paths get index.html so that the
// single-page app's own routes survive a reload.
func (s *Server) mountDashboard() {
	fsys := s.opt.Dashboard
	if fsys == nil {
		s.app.Get("/*", func(c fiber.Ctx) error {
			return c.Status(fiber.StatusNotFound).SendString("this exo binary was built without the dashboard (run `make build`)\n")
		})
		return
	}
	index, err := fs.ReadFile(fsys, "index.html")
	if err != nil {
		index = []byte("<!doctype html><title>exo</title><p>dashboard not built: run <code>make build</code></p>")
	}
	spa := func(c fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
		c.Set(fiber.HeaderCacheControl, "no-cache")
		return c.Status(fiber.StatusOK).Send(index)
	}
	s.app.Get("/", spa)
	s.app.Get("/*", static.New("", static.Config{
		FS: fsys,
		NotFoundHandler: func(c fiber.Ctx) error {
			if strings.Contains(c.Path(), ".") {
				return c.Status(fiber.StatusNotFound).SendString("not found\n")
			}
			return spa(c)
		},
	}))
}
