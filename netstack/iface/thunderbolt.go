package iface

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ThunderboltLink is a device at the far end of a Thunderbolt/USB4 cable: another host
// ("xdomain", which is what Thunderbolt networking runs over) or a peripheral ("device": dock,
// eGPU enclosure). Speeds are per lane, as the kernel reports them.
type ThunderboltLink struct {
	ID          string   `json:"id"` // bus name, e.g. 0-1
	Type        string   `json:"type"`
	VendorName  string   `json:"vendor_name"`
	DeviceName  string   `json:"device_name"`
	UniqueID    string   `json:"unique_id"`
	RxSpeedGbps *float64 `json:"rx_speed_gbps"`
	RxLanes     *int     `json:"rx_lanes"`
	TxSpeedGbps *float64 `json:"tx_speed_gbps"`
	TxLanes     *int     `json:"tx_lanes"`
	// Netdevs are the net devices (thunderbolt-net) running over this link.
	Netdevs []string `json:"netdevs"`
}

// thunderboltType reads a bus device's DEVTYPE; old kernels without it are recognised by name.
func thunderboltType(dir, name string) string {
	if t := ueventValue(filepath.Join(dir, "uevent"), "DEVTYPE"); t != "" {
		return strings.TrimPrefix(t, "thunderbolt_")
	}
	switch {
	case strings.HasPrefix(name, "domain"):
		return "domain"
	case strings.Contains(name, ":"):
		return "retimer"
	case strings.Contains(name, "."):
		return "service"
	}
	return "device"
}

// parseGbps reads "20.0 Gb/s".
func parseGbps(s string) *float64 {
	f, _, _ := strings.Cut(s, " ")
	v, err := strconv.ParseFloat(f, 64)
	if err != nil {
		return nil
	}
	return &v
}

func (s *scanner) thunderbolt() []ThunderboltLink {
	dir := filepath.Join(s.sys, "bus", "thunderbolt", "devices")
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !os.IsNotExist(err) {
			s.warnf("Thunderbolt: %v", err)
		}
		return []ThunderboltLink{}
	}
	links := map[string]*ThunderboltLink{}
	var services []string
	for _, e := range entries {
		name := e.Name()
		ddir := filepath.Join(dir, name)
		switch thunderboltType(ddir, name) {
		case "service":
			services = append(services, name)
		case "xdomain", "device":
			// Route 0 of a domain is this host's own router, not something plugged in.
			if strings.HasSuffix(name, "-0") {
				continue
			}
			l := &ThunderboltLink{
				ID:          name,
				Type:        thunderboltType(ddir, name),
				VendorName:  readTrim(filepath.Join(ddir, "vendor_name")),
				DeviceName:  readTrim(filepath.Join(ddir, "device_name")),
				UniqueID:    readTrim(filepath.Join(ddir, "unique_id")),
				RxSpeedGbps: parseGbps(readTrim(filepath.Join(ddir, "rx_speed"))),
				RxLanes:     readIntPtr(filepath.Join(ddir, "rx_lanes")),
				TxSpeedGbps: parseGbps(readTrim(filepath.Join(ddir, "tx_speed"))),
				TxLanes:     readIntPtr(filepath.Join(ddir, "tx_lanes")),
				Netdevs:     []string{},
			}
			links[name] = l
		}
	}
	// A service (e.g. 0-1.0, key "network") belongs to the xdomain before the dot; the
	// thunderbolt-net driver bound to it owns the net device.
	for _, svc := range services {
		parent, _, _ := strings.Cut(svc, ".")
		l, ok := links[parent]
		if !ok {
			continue
		}
		nets, err := os.ReadDir(filepath.Join(dir, svc, "net"))
		if err != nil {
			continue
		}
		for _, n := range nets {
			l.Netdevs = append(l.Netdevs, n.Name())
		}
	}
	out := []ThunderboltLink{}
	for _, l := range links {
		sort.Strings(l.Netdevs)
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
