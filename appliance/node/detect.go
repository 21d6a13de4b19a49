package node

import (
	"fmt"
	"strings"

	"github.com/exo-nix/exo/appliance/accel"
)

// detect measures this machine once at start and settles the compute backend: a backend the
// operator asked for that cannot load stops the node here, instead of running on the CPU.
func detect(requested string) (*accel.Report, string, error) {
	report, err := accel.Detect(accel.Options{Live: true, Accelerator: requested})
	if err != nil {
		return nil, "", fmt.Errorf("hardware detection: %w", err)
	}
	backend, err := accel.Select(requested, report.Backends)
	if err != nil {
		return nil, "", fmt.Errorf("config key accelerator: %w", err)
	}
	return report, backend, nil
}

// accelSummary is the short form carried in gossip tags, e.g. "cpu" or "cuda:2xNVIDIA H100".
func accelSummary(backend string, r *accel.Report) string {
	if backend == accel.BackendCPU || len(r.Accelerators) == 0 {
		return backend
	}
	names := map[string]int{}
	var order []string
	for _, a := range r.Accelerators {
		if names[a.Name] == 0 {
			order = append(order, a.Name)
		}
		names[a.Name]++
	}
	parts := make([]string, 0, len(order))
	for _, n := range order {
		parts = append(parts, fmt.Sprintf("%dx%s", names[n], n))
	}
	s := backend + ":" + strings.Join(parts, ",")
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}
