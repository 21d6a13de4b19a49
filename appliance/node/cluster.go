package node

import "context"

// clusterRole is the master or worker role: its machinery is the process's shared control
// plane (cluster.Node), started before the roles, so the role itself only reports readiness.
type clusterRole struct {
	name  string
	ready func() (bool, string)
}

func (r *clusterRole) Name() string                             { return r.name }
func (r *clusterRole) Start(context.Context, func(error)) error { return nil }
func (r *clusterRole) Ready() (bool, string)                    { return r.ready() }
func (r *clusterRole) Stop(context.Context) error               { return nil }
