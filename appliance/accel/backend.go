package accel

import (
	"fmt"
	"strings"

	"github.com/ebitengine/purego"
)

// Backend says whether a compute runtime can be used on this machine.
type Backend struct {
	Name string `json:"name"` // cuda, rocm, intel, opencl, cpu
	// Library is the library that loaded, or the first one tried when none did.
	Library string `json:"library"`
	// Loadable: the library loads and its runtime initialises.
	Loadable bool `json:"loadable"`
	// Devices the runtime reports; for OpenCL only GPU and accelerator devices count (PoCL's CPU
	// device is not an accelerator). Null when not probed.
	Devices *int   `json:"devices"`
	Version string `json:"version"` // runtime/driver API version the library reports
	// Error says why it is not loadable, naming each library tried and the loader's message.
	Error string `json:"error"`
}

// Backend names, and the order auto prefers them in.
const (
	BackendCUDA   = "cuda"
	BackendROCm   = "rocm"
	BackendIntel  = "intel"
	BackendOpenCL = "opencl"
	BackendCPU    = "cpu"
	BackendAuto   = "auto"
)

// AutoOrder is the preference of "auto": vendor runtimes before the portable one, CPU last.
var AutoOrder = []string{BackendCUDA, BackendROCm, BackendIntel, BackendOpenCL}

// DefaultLibraries are the libraries tried for each backend, first match wins. ROCm installs
// outside the loader's path unless the distribution links it in, so its usual prefix is tried too.
var DefaultLibraries = map[string][]string{
	BackendCUDA:   {"libcuda.so.1"},
	BackendROCm:   {"libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5", "/opt/rocm/lib/libamdhip64.so"},
	BackendIntel:  {"libze_loader.so.1"},
	BackendOpenCL: {"libOpenCL.so.1"},
}

// Select applies the backend policy. "auto" (or "") takes the first of AutoOrder that loads and
// has a device, else the CPU. Naming a backend demands it: one that cannot load is an error that
// names the library and the loader's message, never a silent fall back to the CPU.
func Select(requested string, available []Backend) (string, error) {
	req := strings.ToLower(strings.TrimSpace(requested))
	if req == "" {
		req = BackendAuto
	}
	find := func(name string) (Backend, bool) {
		for _, b := range available {
			if b.Name == name {
				return b, true
			}
		}
		return Backend{}, false
	}
	switch req {
	case BackendAuto:
		for _, name := range AutoOrder {
			if b, ok := find(name); ok && b.Loadable && b.Devices != nil && *b.Devices > 0 {
				return name, nil
			}
		}
		return BackendCPU, nil
	case BackendCPU:
		return BackendCPU, nil
	case BackendCUDA, BackendROCm, BackendIntel, BackendOpenCL:
		b, ok := find(req)
		if !ok {
			return "", fmt.Errorf("accelerator %q requested but its runtime was not probed", req)
		}
		if !b.Loadable {
			return "", fmt.Errorf("accelerator %q requested but %s cannot be loaded: %s", req, b.Library, b.Error)
		}
		// PoCL gives OpenCL a CPU device, which is a valid explicit choice; the vendor runtimes
		// are useless without a GPU.
		if req != BackendOpenCL && b.Devices != nil && *b.Devices == 0 {
			return "", fmt.Errorf("accelerator %q requested: %s loads but reports no devices", req, b.Library)
		}
		return req, nil
	default:
		return "", fmt.Errorf("accelerator %q unknown: want auto, cpu, cuda, rocm, intel or opencl", requested)
	}
}

// probeBackends tries each runtime. probe says which backends to try with which libraries; the
// others are listed as not probed.
func probeBackends(libs map[string][]string, live bool) []Backend {
	var out []Backend
	for _, name := range AutoOrder {
		cands, overridden := libs[name]
		if !overridden {
			cands = DefaultLibraries[name]
		}
		if !live && !overridden {
			out = append(out, Backend{Name: name, Library: cands[0], Error: "not probed: detection is not reading this machine"})
			continue
		}
		out = append(out, probe(name, cands))
	}
	return append(out, Backend{Name: BackendCPU, Loadable: true})
}

func probe(name string, cands []string) Backend {
	b := Backend{Name: name}
	if len(cands) == 0 {
		b.Error = "no library to try"
		return b
	}
	var errs []string
	for _, lib := range cands {
		// The handle stays open: runtimes start threads on init, and unloading under them
		// crashes; the engine loads the same library again anyway.
		h, err := purego.Dlopen(lib, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, lib) { // dlerror usually names the file itself
				msg = lib + ": " + msg
			}
			errs = append(errs, msg)
			continue
		}
		b.Library = lib
		var initErr error
		switch name {
		case BackendCUDA:
			initErr = probeCUDA(h, &b)
		case BackendROCm:
			initErr = probeHIP(h, &b)
		case BackendIntel:
			initErr = probeLevelZero(h, &b)
		case BackendOpenCL:
			initErr = probeOpenCL(h, &b)
		}
		if initErr != nil {
			b.Error = fmt.Sprintf("%s: %v", lib, initErr)
			return b
		}
		b.Loadable = true
		return b
	}
	b.Library = cands[0]
	b.Error = strings.Join(errs, "; ")
	return b
}

// bind looks a function up and makes fptr call it; a missing symbol is an error, not a panic.
func bind(h uintptr, fptr any, sym string) error {
	p, err := purego.Dlsym(h, sym)
	if err != nil {
		return fmt.Errorf("missing symbol %s: %v", sym, err)
	}
	purego.RegisterFunc(fptr, p)
	return nil
}

type sym struct {
	name string
	fptr any
}

func bindAll(h uintptr, syms ...sym) error {
	for _, s := range syms {
		if err := bind(h, s.fptr, s.name); err != nil {
			return err
		}
	}
	return nil
}

const cudaErrorNoDevice = 100

func probeCUDA(h uintptr, b *Backend) error {
	var cuInit func(uint32) int32
	var cuDeviceGetCount, cuDriverGetVersion func(*int32) int32
	if err := bindAll(h, sym{"cuInit", &cuInit}, sym{"cuDeviceGetCount", &cuDeviceGetCount}, sym{"cuDriverGetVersion", &cuDriverGetVersion}); err != nil {
		return err
	}
	var v int32
	if r := cuDriverGetVersion(&v); r == 0 && v > 0 {
		b.Version = fmt.Sprintf("%d.%d", v/1000, (v%1000)/10)
	}
	switch r := cuInit(0); r {
	case 0:
	case cudaErrorNoDevice:
		b.Devices = ptr(0)
		return nil
	default:
		return fmt.Errorf("cuInit failed with CUresult %d", r)
	}
	var n int32
	if r := cuDeviceGetCount(&n); r != 0 {
		return fmt.Errorf("cuDeviceGetCount failed with CUresult %d", r)
	}
	b.Devices = ptr(int(n))
	return nil
}

const hipErrorNoDevice = 100

func probeHIP(h uintptr, b *Backend) error {
	var hipGetDeviceCount, hipRuntimeGetVersion func(*int32) int32
	if err := bind(h, &hipGetDeviceCount, "hipGetDeviceCount"); err != nil {
		return err
	}
	if bind(h, &hipRuntimeGetVersion, "hipRuntimeGetVersion") == nil {
		var v int32
		// HIP_VERSION = major*10000000 + minor*100000 + patch.
		if hipRuntimeGetVersion(&v) == 0 && v > 0 {
			b.Version = fmt.Sprintf("%d.%d", v/10000000, (v/100000)%100)
		}
	}
	var n int32
	switch r := hipGetDeviceCount(&n); r {
	case 0:
		b.Devices = ptr(int(n))
	case hipErrorNoDevice:
		b.Devices = ptr(0)
	default:
		return fmt.Errorf("hipGetDeviceCount failed with hipError %d", r)
	}
	return nil
}

const zeInitFlagGPUOnly = 1

func probeLevelZero(h uintptr, b *Backend) error {
	var zeInit func(uint32) uint32
	var zeDriverGet func(*uint32, *uintptr) uint32
	var zeDeviceGet func(uintptr, *uint32, *uintptr) uint32
	if err := bindAll(h, sym{"zeInit", &zeInit}, sym{"zeDriverGet", &zeDriverGet}, sym{"zeDeviceGet", &zeDeviceGet}); err != nil {
		return err
	}
	if r := zeInit(zeInitFlagGPUOnly); r != 0 {
		return fmt.Errorf("zeInit failed with ze_result 0x%x", r)
	}
	var nd uint32
	if r := zeDriverGet(&nd, nil); r != 0 {
		return fmt.Errorf("zeDriverGet failed with ze_result 0x%x", r)
	}
	total := 0
	if nd > 0 {
		drivers := make([]uintptr, nd)
		if r := zeDriverGet(&nd, &drivers[0]); r != 0 {
			return fmt.Errorf("zeDriverGet failed with ze_result 0x%x", r)
		}
		for _, drv := range drivers[:nd] {
			var n uint32
			if r := zeDeviceGet(drv, &n, nil); r != 0 {
				return fmt.Errorf("zeDeviceGet failed with ze_result 0x%x", r)
			}
			total += int(n)
		}
	}
	b.Devices = ptr(total)
	return nil
}

const (
	clSuccess               = 0
	clDeviceNotFound        = -1
	clPlatformNotFoundKHR   = -1001
	clDeviceTypeGPU         = 1 << 2
	clDeviceTypeAccelerator = 1 << 3
)

func probeOpenCL(h uintptr, b *Backend) error {
	var clGetPlatformIDs func(uint32, *uintptr, *uint32) int32
	var clGetDeviceIDs func(uintptr, uint64, uint32, *uintptr, *uint32) int32
	if err := bindAll(h, sym{"clGetPlatformIDs", &clGetPlatformIDs}, sym{"clGetDeviceIDs", &clGetDeviceIDs}); err != nil {
		return err
	}
	var np uint32
	switch r := clGetPlatformIDs(0, nil, &np); r {
	case clSuccess:
	case clPlatformNotFoundKHR:
		// The ICD loader is installed but no vendor driver registered with it.
		return fmt.Errorf("no OpenCL platform installed (clGetPlatformIDs: %d)", r)
	default:
		return fmt.Errorf("clGetPlatformIDs failed with %d", r)
	}
	if np == 0 {
		return fmt.Errorf("no OpenCL platform installed")
	}
	platforms := make([]uintptr, np)
	if r := clGetPlatformIDs(np, &platforms[0], nil); r != clSuccess {
		return fmt.Errorf("clGetPlatformIDs failed with %d", r)
	}
	total := 0
	for _, p := range platforms {
		var n uint32
		switch r := clGetDeviceIDs(p, clDeviceTypeGPU|clDeviceTypeAccelerator, 0, nil, &n); r {
		case clSuccess:
			total += int(n)
		case clDeviceNotFound:
		default:
			return fmt.Errorf("clGetDeviceIDs failed with %d", r)
		}
	}
	b.Devices = ptr(total)
	return nil
}
