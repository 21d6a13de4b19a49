//go:build !linux

package iface

import "errors"

func liveAddresses() (map[string][]string, error) {
	return nil, errors.New("netlink is Linux only")
}
