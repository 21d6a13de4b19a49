package iface

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
)

// liveAddresses asks the kernel over netlink for every interface's addresses; unlike procfs this
// also sees addresses without a connected route and keeps IPv4 prefix lengths exact.
func liveAddresses() (map[string][]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	out := map[string][]string{}
	for _, l := range links {
		name := l.Attrs().Name
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", name, err)
		}
		var ps []netip.Prefix
		for _, a := range addrs {
			if a.IPNet == nil {
				continue
			}
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			ones, _ := a.Mask.Size()
			ps = append(ps, netip.PrefixFrom(ip.Unmap(), ones))
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i].Addr().Less(ps[j].Addr()) })
		list := []string{}
		for _, p := range ps {
			list = append(list, p.String())
		}
		out[name] = list
	}
	return out, nil
}
