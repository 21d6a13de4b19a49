// Package buildinfo reports what this binary is: version, commit, toolchain, build tags and the
// CPU features the kernels can use.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"

	"golang.org/x/sys/cpu"
)

// Version and Commit are set at link time (-ldflags "-X .../buildinfo.Version=...").
var (
	Version = "dev"
	Commit  = ""
)

// Info is the description printed by `exo version` and exported as exo_build_info.
type Info struct {
	Version     string   `json:"version"`
	Commit      string   `json:"commit"`
	GoVersion   string   `json:"go_version"`
	OS          string   `json:"os"`
	Arch        string   `json:"arch"`
	BuildTags   []string `json:"build_tags"`
	CPUFeatures []string `json:"cpu_features"`
}

// Get collects the build description. The commit falls back to the VCS stamp of the Go build.
func Get() Info {
	info := Info{Version: Version, Commit: Commit, GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, BuildTags: []string{}}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if info.Commit == "" {
					info.Commit = s.Value
				}
			case "-tags":
				for _, t := range strings.Split(s.Value, ",") {
					if t != "" {
						info.BuildTags = append(info.BuildTags, t)
					}
				}
			}
		}
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	info.CPUFeatures = CPUFeatures()
	return info
}

// CPUFeatures lists the SIMD features of this CPU that matter to the kernels.
func CPUFeatures() []string {
	var out []string
	add := func(ok bool, name string) {
		if ok {
			out = append(out, name)
		}
	}
	switch runtime.GOARCH {
	case "amd64", "386":
		add(cpu.X86.HasSSE3, "sse3")
		add(cpu.X86.HasSSSE3, "ssse3")
		add(cpu.X86.HasSSE41, "sse4.1")
		add(cpu.X86.HasAVX, "avx")
		add(cpu.X86.HasAVX2, "avx2")
		add(cpu.X86.HasFMA, "fma")
		add(cpu.X86.HasF16C, "f16c")
		add(cpu.X86.HasAVX512F, "avx512f")
		add(cpu.X86.HasAVX512BW, "avx512bw")
		add(cpu.X86.HasAVX512VL, "avx512vl")
		add(cpu.X86.HasAVX512VNNI, "avx512vnni")
		add(cpu.X86.HasAVX512BF16, "avx512bf16")
		add(cpu.X86.HasAVXVNNI, "avxvnni")
	case "arm64":
		add(cpu.ARM64.HasASIMD, "neon")
		add(cpu.ARM64.HasASIMDDP, "dotprod")
		add(cpu.ARM64.HasASIMDHP, "fp16")
		add(cpu.ARM64.HasI8MM, "i8mm")
		add(cpu.ARM64.HasSVE, "sve")
	}
	if out == nil {
		out = []string{}
	}
	return out
}
