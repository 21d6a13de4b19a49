package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/exo-nix/exo/appliance/accel"
)

func init() { addCommand(newDetectCmd) }

func newDetectCmd() *cobra.Command {
	var (
		asJSON                   bool
		sysfs, procfs, devtree   string
		nvmlLib, acceleratorFlag string
	)
	cmd := &cobra.Command{
		Use:   "detect",
		Short: "Show this machine's CPU, memory, accelerators, compute runtimes and network",
		Long: "Detect what this node is made of, as placement and the dashboard see it.\n\n" +
			"With --sysfs-root, --procfs-root or --devtree-root the description is read from copies\n" +
			"of those trees instead; netlink, NVML and the vendor runtimes are then not asked\n" +
			"(unless --nvml-library is given), since they would describe this machine instead.\n" +
			"Problems reading any one source are listed as warnings; the exit status stays 0.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := acceleratorFlag
			if req == "" {
				req = os.Getenv("EXO_ACCELERATOR")
			}
			opts := accel.Options{
				SysfsRoot:   sysfs,
				ProcfsRoot:  procfs,
				DevtreeRoot: devtree,
				NVMLLibrary: nvmlLib,
				Live:        sysfs == "" && procfs == "" && devtree == "",
				Accelerator: req,
			}
			rep, err := accel.Detect(opts)
			if err != nil {
				return usageError{err}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printDetectReport(out, rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print as JSON (schema in README, section Detection)")
	f.StringVar(&sysfs, "sysfs-root", "", "read sysfs from this directory instead of /sys")
	f.StringVar(&procfs, "procfs-root", "", "read procfs from this directory instead of /proc")
	f.StringVar(&devtree, "devtree-root", "", "read the device tree from this directory instead of /proc/device-tree")
	f.StringVar(&nvmlLib, "nvml-library", "", "NVML library to query (default libnvidia-ml.so.1 when NVIDIA GPUs are present)")
	f.StringVar(&acceleratorFlag, "accelerator", "", "backend request to evaluate: auto, cpu, cuda, rocm, intel, opencl (default $EXO_ACCELERATOR, else auto)")
	return cmd
}

func detectGiB(b uint64) string { return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30)) }

func detectDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printDetectReport(w io.Writer, r *accel.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	host := r.Hostname
	if r.Platform != "" {
		host += " (" + r.Platform + ")"
	}
	fmt.Fprintf(tw, "host:\t%s\n", host)
	c := r.CPU
	fmt.Fprintf(tw, "cpu:\t%s, %s, %d cores / %d threads, %d NUMA node(s)\n", detectDash(c.Model), detectDash(c.Arch), c.PhysicalCores, c.LogicalCores, c.NUMANodes)
	fmt.Fprintf(tw, "cpu features:\t%s\n", detectDash(strings.Join(c.Features, " ")))
	m := r.Memory
	mem := fmt.Sprintf("%s total, %s available", detectGiB(m.TotalBytes), detectGiB(m.AvailableBytes))
	if m.CgroupLimitBytes != nil {
		mem += ", cgroup limit " + detectGiB(*m.CgroupLimitBytes)
	}
	fmt.Fprintf(tw, "memory:\t%s\n", mem)
	tw.Flush()

	fmt.Fprintln(w, "accelerators:")
	if len(r.Accelerators) == 0 {
		fmt.Fprintln(w, "  none")
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, a := range r.Accelerators {
		memS := "-"
		if a.MemoryTotalBytes != nil {
			memS = detectGiB(*a.MemoryTotalBytes)
			if a.MemoryFreeBytes != nil {
				memS += " (" + detectGiB(*a.MemoryFreeBytes) + " free)"
			}
			if a.UnifiedMemory {
				memS += " unified"
			}
		}
		extra := []string{}
		if a.ComputeCapability != "" {
			extra = append(extra, "cc "+a.ComputeCapability)
		}
		if a.UtilizationPercent != nil {
			extra = append(extra, fmt.Sprintf("%d%% busy", *a.UtilizationPercent))
		}
		if a.TemperatureC != nil {
			extra = append(extra, fmt.Sprintf("%.0f°C", *a.TemperatureC))
		}
		if a.PowerW != nil {
			extra = append(extra, fmt.Sprintf("%.0f W", *a.PowerW))
		}
		if a.DriverVersion != "" {
			extra = append(extra, "driver "+a.DriverVersion)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", detectDash(a.PCIAddress), a.Vendor, a.Name, memS, detectDash(a.Driver), strings.Join(extra, ", "))
	}
	tw.Flush()

	fmt.Fprintln(w, "backends:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, b := range r.Backends {
		state := "loadable"
		if strings.HasPrefix(b.Error, "not probed") {
			state = b.Error
		} else if !b.Loadable {
			state = "not loadable: " + b.Error
		} else if b.Devices != nil {
			state = fmt.Sprintf("loadable, %d device(s)", *b.Devices)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", b.Name, detectDash(b.Library), state)
	}
	tw.Flush()
	fmt.Fprintf(w, "selected backend: %s\n", detectDash(r.SelectedBackend))

	fmt.Fprintln(w, "network:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if r.Network != nil {
		for _, it := range r.Network.Interfaces {
			speed := "-"
			if it.SpeedMbps != nil {
				speed = fmt.Sprintf("%d Mb/s", *it.SpeedMbps)
			}
			mtu := "-"
			if it.MTU != nil {
				mtu = fmt.Sprintf("mtu %d", *it.MTU)
			}
			notes := []string{}
			if it.Master != "" {
				notes = append(notes, "in "+it.Master)
			}
			if it.RDMA != nil {
				notes = append(notes, fmt.Sprintf("rdma %s/%d", it.RDMA.Device, it.RDMA.Port))
			}
			notes = append(notes, it.Addresses...)
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", it.Name, it.Kind, it.State, speed, mtu, strings.Join(notes, " "))
		}
		tw.Flush()
		for _, b := range r.Network.Bonds {
			var ms []string
			for _, m := range b.Members {
				s := m.Name + " " + m.State
				if m.Active {
					s += " active"
				}
				if m.SpeedMbps != nil {
					s += fmt.Sprintf(" %d Mb/s", *m.SpeedMbps)
				}
				ms = append(ms, s)
			}
			fmt.Fprintf(w, "  bond %s: %s, members: %s\n", b.Name, detectDash(b.Mode), strings.Join(ms, "; "))
		}
		for _, d := range r.Network.RDMADevices {
			for _, p := range d.Ports {
				rate := "-"
				if p.RateGbps != nil {
					rate = fmt.Sprintf("%g Gb/s", *p.RateGbps)
				}
				fmt.Fprintf(w, "  rdma %s port %d: %s %s %s -> %s\n", d.Name, p.Port, p.State, p.LinkLayer, rate, detectDash(p.Netdev))
			}
		}
		for _, t := range r.Network.Thunderbolt {
			speed := "-"
			if t.RxSpeedGbps != nil && t.RxLanes != nil {
				speed = fmt.Sprintf("%d x %g Gb/s", *t.RxLanes, *t.RxSpeedGbps)
			}
			fmt.Fprintf(w, "  thunderbolt %s %s %q (%s): %s -> %s\n", t.ID, t.Type, t.DeviceName, t.VendorName, speed, detectDash(strings.Join(t.Netdevs, ",")))
		}
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintln(w, "warnings:")
		for _, s := range r.Warnings {
			fmt.Fprintln(w, "  - "+s)
		}
	}
}
