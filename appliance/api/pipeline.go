package api

import (
	"context"
	"time"

	"github.com/gofiber/fiber/v3"

	"github.com/exo-nix/exo/appliance/cluster"
	"github.com/exo-nix/exo/appliance/cluster/state"
	"github.com/exo-nix/exo/appliance/pipeline"
	"github.com/exo-nix/exo/appliance/serving"
)

// Pipelines is distributed inference as the API uses it (implemented by *pipeline.Service).
type Pipelines interface {
	// Acquire admits a request for model to the pipeline of an instance placed on other
	// nodes; it returns (nil, nil) when no such instance exists, so the node serves the model
	// itself.
	Acquire(ctx context.Context, model string) (serving.Generator, error)
	// Links are this node's tensor connections to its peers: transport and probe estimates.
	Links() []pipeline.Link
	// Models are the models of the instances placed across nodes.
	Models() []string
	// StageStatus asks the hosts of the instances' stages how their stages are doing.
	StageStatus(ctx context.Context, instances []state.Instance) map[string][]pipeline.StageStatus
}

// clusterDoc is GET /api/v1/cluster: the control plane's view plus this node's links.
type clusterDoc struct {
	*cluster.ClusterInfo
	// Transport lists each peer this node has a tensor connection to, with the transport that
	// carries it (quic, or tcp after a fallback) and the probe's RTT and bandwidth.
	Transport []pipeline.Link `json:"transport"`
}

// liveInstance is an instance with what its stage hosts report (GET /api/v1/instances).
type liveInstance struct {
	state.Instance
	// Live is each stage's state on its node (fetching, loading, ready, failed), in stage order.
	Live []pipeline.StageStatus `json:"live,omitempty"`
}

// liveStatusTimeout bounds asking the stage hosts for their state.
const liveStatusTimeout = 2 * time.Second

func (s *Server) withLive(c fiber.Ctx, list []state.Instance) []liveInstance {
	out := make([]liveInstance, len(list))
	var live map[string][]pipeline.StageStatus
	if s.opt.Pipelines != nil && len(list) > 0 {
		ctx, cancel := context.WithTimeout(c.Context(), liveStatusTimeout)
		live = s.opt.Pipelines.StageStatus(ctx, list)
		cancel()
	}
	for i, in := range list {
		out[i] = liveInstance{Instance: in, Live: live[in.ID]}
	}
	return out
}
