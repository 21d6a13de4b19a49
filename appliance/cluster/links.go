package cluster

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/exo-nix/exo/appliance/placement"
)

// LinkFigure is what this node's tensor transport measured of its path to a peer (several
// paths together when it stripes over them); zero fields were not measured.
type LinkFigure struct {
	RTT       time.Duration
	Bandwidth float64 // bytes per second
}

// tagLinks carries the node's link figures to the placement leader: entries
// "<peer id prefix>:<rtt µs>:<bandwidth kB/s>", comma separated, in peer id order, cut to a
// budget that serf's tag limit leaves; peers beyond it fall back to gossip's coordinates.
const tagLinks = "lk"

const (
	maxLinksTag  = 110 // bytes
	linkIDPrefix = 8   // hex digits of a peer's id
)

func encodeLinks(figs map[string]LinkFigure) string {
	var b strings.Builder
	for _, id := range slices.Sorted(maps.Keys(figs)) {
		f := figs[id]
		if f.RTT <= 0 && f.Bandwidth <= 0 {
			continue
		}
		e := fmt.Sprintf("%s:%d:%d", id[:min(len(id), linkIDPrefix)], f.RTT.Microseconds(), int64(f.Bandwidth/1e3))
		if b.Len()+len(e)+1 > maxLinksTag {
			break
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(e)
	}
	return b.String()
}

// decodeLinks reads a tagLinks value, resolving id prefixes among ids (an ambiguous or unknown
// prefix is skipped).
func decodeLinks(tag string, ids []string) map[string]placement.Probe {
	out := map[string]placement.Probe{}
	for _, e := range strings.Split(tag, ",") {
		f := strings.Split(e, ":")
		if len(f) != 3 || f[0] == "" {
			continue
		}
		rtt, err1 := strconv.ParseInt(f[1], 10, 64)
		bw, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || rtt < 0 || bw < 0 {
			continue
		}
		match := ""
		for _, id := range ids {
			if strings.HasPrefix(id, f[0]) {
				if match != "" {
					match = ""
					break
				}
				match = id
			}
		}
		if match != "" {
			out[match] = placement.Probe{RTT: time.Duration(rtt) * time.Microsecond, Bandwidth: float64(bw) * 1e3}
		}
	}
	return out
}

// LinkView is one link as GET /api/v1/placement shows what the planner assumed.
type LinkView struct {
	From      string  `json:"from"`
	To        string  `json:"to"`
	LatencyMs float64 `json:"latency_ms"`
	Bandwidth float64 `json:"bandwidth_bytes_per_second"`
	// Source is probe (measured by the nodes' transport) or gossip (latency from gossip's
	// coordinates, bandwidth assumed).
	Source string `json:"source"`
}

func linkViews(nodes []placement.Node, links placement.Links) []LinkView {
	name := map[string]string{}
	for _, n := range nodes {
		name[n.ID] = cmp.Or(n.Name, n.ID)
	}
	var out []LinkView
	for a, m := range links {
		for b, l := range m {
			out = append(out, LinkView{From: name[a], To: name[b], LatencyMs: float64(l.Latency.Microseconds()) / 1e3, Bandwidth: l.Bandwidth, Source: l.Source})
		}
	}
	slices.SortFunc(out, func(x, y LinkView) int { return cmp.Or(cmp.Compare(x.From, y.From), cmp.Compare(x.To, y.To)) })
	return out
}
