package api

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v3"

	"github.com/exo-nix/exo/appliance/cluster"
	"github.com/exo-nix/exo/appliance/cluster/state"
	"github.com/exo-nix/exo/appliance/pipeline"
)

// Cluster is the control plane as the API uses it (implemented by *cluster.Node).
type Cluster interface {
	Status(ctx context.Context) (*cluster.ClusterInfo, error)
	Nodes(ctx context.Context) ([]cluster.NodeInfo, error)
	Instances(ctx context.Context) ([]state.Instance, error)
	CreateInstance(ctx context.Context, req cluster.InstanceRequest) (state.Instance, error)
	DeleteInstance(ctx context.Context, id string) error
	Rebalance(ctx context.Context, id string) (*cluster.RebalanceResult, error)
	Placement(ctx context.Context, req cluster.InstanceRequest) (*cluster.PlacementPreview, error)
	// CreateToken issues a join token admitting nodes up to role (api, worker or master).
	CreateToken(ctx context.Context, ttl time.Duration, role string) (*cluster.TokenInfo, error)
}

// clusterTimeout bounds one control call (it may be forwarded to the raft leader).
const clusterTimeout = 20 * time.Second

func (s *Server) clusterRoutes() {
	if s.opt.Cluster == nil {
		return
	}
	s.app.Get("/api/v1/cluster", s.clusterStatus)
	s.app.Post("/api/v1/cluster/token", s.clusterToken)
	s.app.Get("/api/v1/nodes", s.clusterNodes)
	s.app.Get("/api/v1/instances", s.listInstances)
	s.app.Post("/api/v1/instances", s.createInstance)
	s.app.Post("/api/v1/instances/rebalance", s.rebalance)
	s.app.Post("/api/v1/instances/:id/rebalance", s.rebalance)
	s.app.Delete("/api/v1/instances", s.deleteInstance)
	s.app.Delete("/api/v1/instances/:id", s.deleteInstance)
	s.app.Get("/api/v1/placement", s.placementPreview)
}

func clusterCtx(c fiber.Ctx) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Context(), clusterTimeout)
}

// clusterError answers an error of the control plane with the status it carries.
func clusterError(c fiber.Ctx, err error) error {
	status := fiber.StatusInternalServerError
	var hs interface{ HTTPStatus() int }
	if errors.As(err, &hs) {
		status = hs.HTTPStatus()
	}
	typ := "server_error"
	switch {
	case status == fiber.StatusNotFound:
		typ = "not_found_error"
	case status >= 400 && status < 500:
		typ = "invalid_request_error"
	}
	body := fiber.Map{"message": err.Error(), "type": typ, "param": nil, "code": nil}
	var ce *cluster.Error
	if errors.As(err, &ce) && ce.ShortBytes > 0 {
		body["code"] = "insufficient_memory"
		body["short_bytes"] = ce.ShortBytes
	}
	return c.Status(status).JSON(fiber.Map{"error": body})
}

func (s *Server) clusterStatus(c fiber.Ctx) error {
	ctx, cancel := clusterCtx(c)
	defer cancel()
	info, err := s.opt.Cluster.Status(ctx)
	if err != nil {
		return clusterError(c, err)
	}
	doc := clusterDoc{ClusterInfo: info, Transport: []pipeline.Link{}}
	if s.opt.Pipelines != nil {
		doc.Transport = s.opt.Pipelines.Links()
	}
	return c.JSON(doc)
}

func (s *Server) clusterToken(c fiber.Ctx) error {
	var req struct {
		TTL string `json:"ttl"`
		// Role is the most privileged role the token admits; empty means worker.
		Role string `json:"role"`
	}
	if len(c.Body()) > 0 {
		if err := c.Bind().JSON(&req); err != nil {
			return writeError(c, fiber.StatusBadRequest, "invalid_request_error", "body: "+err.Error())
		}
	}
	ttl := time.Hour
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			return writeError(c, fiber.StatusBadRequest, "invalid_request_error", "ttl "+strconv.Quote(req.TTL)+" is not a duration such as 1h or 30m")
		}
		ttl = d
	}
	ctx, cancel := clusterCtx(c)
	defer cancel()
	tok, err := s.opt.Cluster.CreateToken(ctx, ttl, req.Role)
	if err != nil {
		return clusterError(c, err)
	}
	return c.Status(fiber.StatusCreated).JSON(tok)
}

func (s *Server) clusterNodes(c fiber.Ctx) error {
	ctx, cancel := clusterCtx(c)
	defer cancel()
	nodes, err := s.opt.Cluster.Nodes(ctx)
	if err != nil {
		return clusterError(c, err)
	}
	if nodes == nil {
		nodes = []cluster.NodeInfo{}
	}
	return c.JSON(fiber.Map{"nodes": nodes})
}

func (s *Server) listInstances(c fiber.Ctx) error {
	ctx, cancel := clusterCtx(c)
	defer cancel()
	list, err := s.opt.Cluster.Instances(ctx)
	if err != nil {
		return clusterError(c, err)
	}
	return c.JSON(fiber.Map{"instances": s.withLive(c, list)})
}

func (s *Server) createInstance(c fiber.Ctx) error {
	var req cluster.InstanceRequest
	if err := c.Bind().JSON(&req); err != nil {
		return writeError(c, fiber.StatusBadRequest, "invalid_request_error", "body: "+err.Error())
	}
	ctx, cancel := clusterCtx(c)
	defer cancel()
	in, err := s.opt.Cluster.CreateInstance(ctx, req)
	if err != nil {
		return clusterError(c, err)
	}
	s.events.Publish(Event{Type: "instance.created", Data: in})
	return c.Status(fiber.StatusCreated).JSON(in)
}

func (s *Server) deleteInstance(c fiber.Ctx) error {
	id := c.Params("id")
	if id == "" {
		id = c.Query("id")
	}
	if id == "" {
		return writeError(c, fiber.StatusBadRequest, "invalid_request_error", "which instance? give /api/v1/instances/{id} or ?id=")
	}
	ctx, cancel := clusterCtx(c)
	defer cancel()
	if err := s.opt.Cluster.DeleteInstance(ctx, id); err != nil {
		return clusterError(c, err)
	}
	s.events.Publish(Event{Type: "instance.deleted", Data: fiber.Map{"id": id}})
	return c.JSON(fiber.Map{"deleted": id})
}

func (s *Server) rebalance(c fiber.Ctx) error {
	id := c.Params("id")
	if id == "" && len(c.Body()) > 0 {
		var req struct {
			ID string `json:"id"`
		}
		if err := c.Bind().JSON(&req); err != nil {
			return writeError(c, fiber.StatusBadRequest, "invalid_request_error", "body: "+err.Error())
		}
		id = req.ID
	}
	ctx, cancel := clusterCtx(c)
	defer cancel()
	res, err := s.opt.Cluster.Rebalance(ctx, id)
	if err != nil {
		return clusterError(c, err)
	}
	if len(res.Moved) > 0 {
		s.events.Publish(Event{Type: "instance.rebalanced", Data: fiber.Map{"moved": res.Moved}})
	}
	return c.JSON(res)
}

func (s *Server) placementPreview(c fiber.Ctx) error {
	req := cluster.InstanceRequest{Model: c.Query("model")}
	for _, q := range []struct {
		name string
		dst  *int
	}{{"context", &req.Context}, {"min_nodes", &req.MinNodes}, {"tensor_parallel", &req.TensorParallel}} {
		if v := c.Query(q.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return writeError(c, fiber.StatusBadRequest, "invalid_request_error", q.name+" "+strconv.Quote(v)+" is not a number")
			}
			*q.dst = n
		}
	}
	if v := c.Query("nodes"); v != "" {
		req.Nodes = strings.Split(v, ",")
	}
	ctx, cancel := clusterCtx(c)
	defer cancel()
	p, err := s.opt.Cluster.Placement(ctx, req)
	if err != nil {
		return clusterError(c, err)
	}
	return c.JSON(p)
}
