package iface

import (
	"bufio"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Bond is a Linux bonding device. Mode and policies use the kernel's short names (sysfs form):
// balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb.
type Bond struct {
	Name               string `json:"name"`
	Mode               string `json:"mode"`
	MIIStatus          string `json:"mii_status"`
	SpeedMbps          *int   `json:"speed_mbps"`
	ActiveMember       string `json:"active_member"`        // active-backup, balance-tlb, balance-alb
	LACPRate           string `json:"lacp_rate"`            // 802.3ad only
	TransmitHashPolicy string `json:"transmit_hash_policy"` // balance-xor, 802.3ad, balance-tlb
	// ActiveAggregator is the 802.3ad aggregator carrying traffic; members outside it are idle.
	ActiveAggregator *int         `json:"active_aggregator"`
	Members          []BondMember `json:"members"`
}

// BondMember is one slave of a bond.
type BondMember struct {
	Name         string `json:"name"`
	State        string `json:"state"` // MII status: up, down, going down, going back
	SpeedMbps    *int   `json:"speed_mbps"`
	Active       bool   `json:"active"` // carries traffic now
	LinkFailures *int   `json:"link_failures"`
	AggregatorID *int   `json:"aggregator_id"` // 802.3ad only
}

// procBond is what /proc/net/bonding/<bond> says.
type procBond struct {
	mode, miiStatus, hashPolicy, lacpRate, currentActive string
	activeAggregator                                     *int
	members                                              []procMember
}

type procMember struct {
	name, mii    string
	speed        *int
	failures     *int
	aggregatorID *int
}

// bondModes maps /proc/net/bonding's long mode names to the sysfs short names.
var bondModes = map[string]string{
	"load balancing (round-robin)":          "balance-rr",
	"fault-tolerance (active-backup)":       "active-backup",
	"load balancing (xor)":                  "balance-xor",
	"fault-tolerance (broadcast)":           "broadcast",
	"IEEE 802.3ad Dynamic link aggregation": "802.3ad",
	"transmit load balancing":               "balance-tlb",
	"adaptive load balancing":               "balance-alb",
}

func parseProcBonding(path string) (*procBond, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pb := &procBond{}
	var cur *procMember
	inActiveAgg := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		indented := strings.HasPrefix(key, "\t") || strings.HasPrefix(key, " ")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if key == "Slave Interface" {
			pb.members = append(pb.members, procMember{name: val})
			cur = &pb.members[len(pb.members)-1]
			inActiveAgg = false
			continue
		}
		if key == "Active Aggregator Info" {
			inActiveAgg = true
			continue
		}
		if inActiveAgg && indented {
			if key == "Aggregator ID" {
				pb.activeAggregator = atoiPtr(val)
			}
			continue
		}
		inActiveAgg = false
		if cur == nil {
			switch key {
			case "Bonding Mode":
				if m, ok := bondModes[val]; ok {
					pb.mode = m
				} else {
					pb.mode = val
				}
			case "MII Status":
				pb.miiStatus = val
			case "Transmit Hash Policy":
				pb.hashPolicy, _, _ = strings.Cut(val, " ")
			case "LACP rate":
				pb.lacpRate = val
			case "Currently Active Slave":
				if val != "None" {
					pb.currentActive = val
				}
			}
			continue
		}
		if indented {
			// The indented "details actor/partner lacp pdu" blocks describe LACP peers, not
			// this member's link.
			continue
		}
		switch key {
		case "MII Status":
			cur.mii = val
		case "Speed":
			if n, _, ok := strings.Cut(val, " "); ok {
				cur.speed = atoiPtr(n)
			}
		case "Link Failure Count":
			cur.failures = atoiPtr(val)
		case "Aggregator ID":
			cur.aggregatorID = atoiPtr(val)
		}
	}
	return pb, sc.Err()
}

func atoiPtr(s string) *int {
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return nil
	}
	return &v
}

// firstField returns the first word of a sysfs value such as "802.3ad 4" or "fast 1".
func firstField(s string) string {
	f, _, _ := strings.Cut(s, " ")
	return f
}

func (s *scanner) bonds(ifaces []Interface) []Bond {
	names := map[string]bool{}
	for _, it := range ifaces {
		if it.Kind == KindBond {
			names[it.Name] = true
		}
	}
	procDir := filepath.Join(s.proc, "net", "bonding")
	if entries, err := os.ReadDir(procDir); err == nil {
		for _, e := range entries {
			names[e.Name()] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)

	out := []Bond{}
	for _, name := range sorted {
		out = append(out, s.bond(name, procDir))
	}
	return out
}

func (s *scanner) bond(name, procDir string) Bond {
	b := Bond{Name: name, Members: []BondMember{}}
	netDir := filepath.Join(s.sys, "class", "net", name)
	bdir := filepath.Join(netDir, "bonding")
	haveSysfs := isDir(bdir)
	pb, perr := parseProcBonding(filepath.Join(procDir, name))
	if perr != nil {
		pb = nil
	}
	if !haveSysfs && pb == nil {
		s.warnf("bond %s: neither %s nor %s readable: %v", name, bdir, filepath.Join(procDir, name), perr)
		return b
	}

	var memberNames []string
	if haveSysfs {
		b.Mode = firstField(readTrim(filepath.Join(bdir, "mode")))
		b.MIIStatus = readTrim(filepath.Join(bdir, "mii_status"))
		b.ActiveMember = readTrim(filepath.Join(bdir, "active_slave"))
		memberNames = strings.Fields(readTrim(filepath.Join(bdir, "slaves")))
		if b.Mode == "802.3ad" {
			b.LACPRate = firstField(readTrim(filepath.Join(bdir, "lacp_rate")))
		}
		if b.Mode != "active-backup" && b.Mode != "broadcast" && b.Mode != "balance-rr" && b.Mode != "balance-alb" {
			b.TransmitHashPolicy = firstField(readTrim(filepath.Join(bdir, "xmit_hash_policy")))
		}
		if v := readIntPtr(filepath.Join(netDir, "speed")); v != nil && *v > 0 {
			b.SpeedMbps = v
		}
	}
	procMembers := map[string]procMember{}
	if pb != nil {
		if b.Mode == "" {
			b.Mode = pb.mode
		}
		if b.MIIStatus == "" {
			b.MIIStatus = pb.miiStatus
		}
		if b.ActiveMember == "" {
			b.ActiveMember = pb.currentActive
		}
		if b.Mode == "802.3ad" && b.LACPRate == "" {
			b.LACPRate = pb.lacpRate
		}
		if b.TransmitHashPolicy == "" {
			b.TransmitHashPolicy = pb.hashPolicy
		}
		b.ActiveAggregator = pb.activeAggregator
		for _, m := range pb.members {
			procMembers[m.name] = m
			if !haveSysfs {
				memberNames = append(memberNames, m.name)
			}
		}
	} else {
		s.warnf("bond %s: %v; member speeds and aggregator from sysfs only", name, perr)
	}
	if b.Mode != "802.3ad" {
		b.ActiveAggregator = nil
	}

	for _, mn := range memberNames {
		m := BondMember{Name: mn}
		sdir := filepath.Join(s.sys, "class", "net", mn, "bonding_slave")
		pm, inProc := procMembers[mn]
		m.State = readTrim(filepath.Join(sdir, "mii_status"))
		if m.State == "" {
			m.State = pm.mii
		}
		m.LinkFailures = readIntPtr(filepath.Join(sdir, "link_failure_count"))
		if m.LinkFailures == nil {
			m.LinkFailures = pm.failures
		}
		if b.Mode == "802.3ad" {
			m.AggregatorID = readIntPtr(filepath.Join(sdir, "ad_aggregator_id"))
			if m.AggregatorID == nil {
				m.AggregatorID = pm.aggregatorID
			}
		}
		// The bonding driver's own speed for the member; sysfs of a down NIC has none.
		m.SpeedMbps = pm.speed
		if m.SpeedMbps == nil {
			if v := readIntPtr(filepath.Join(s.sys, "class", "net", mn, "speed")); v != nil && *v > 0 {
				m.SpeedMbps = v
			}
		}
		switch state := readTrim(filepath.Join(sdir, "state")); {
		case state != "":
			m.Active = state == "active" && m.State == "up"
		case b.Mode == "802.3ad":
			m.Active = m.State == "up" && b.ActiveAggregator != nil && m.AggregatorID != nil && *m.AggregatorID == *b.ActiveAggregator
		case b.Mode == "active-backup" || b.Mode == "balance-tlb" || b.Mode == "balance-alb":
			m.Active = m.State == "up" && mn == b.ActiveMember
		default:
			m.Active = m.State == "up"
		}
		if m.State == "" && !inProc {
			s.warnf("bond %s member %s: no MII status in %s nor /proc", name, mn, sdir)
		}
		b.Members = append(b.Members, m)
	}
	return b
}
