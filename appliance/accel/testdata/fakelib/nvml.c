/*
 * A stand-in for libnvidia-ml.so.1, built by the tests with gcc. It implements the few NVML calls
 * exo makes, with the types and return codes of nvml.h, and reports two H100s at the PCI
 * addresses of the nvidia-roce-bond machine. Variants:
 *   (default)          two healthy devices
 *   -DFAKE_ERRORS      the second device is lost and most queries fail
 *   -DFAKE_INIT_FAILS  nvmlInit_v2 says the driver is not loaded
 *   -DFAKE_NO_COUNT    lacks nvmlDeviceGetCount_v2 (an NVML too old or broken)
 */
#include <stdio.h>
#include <string.h>

typedef int nvmlReturn_t;
enum {
	NVML_SUCCESS = 0, NVML_ERROR_UNINITIALIZED = 1, NVML_ERROR_INVALID_ARGUMENT = 2,
	NVML_ERROR_NOT_SUPPORTED = 3, NVML_ERROR_DRIVER_NOT_LOADED = 9, NVML_ERROR_GPU_IS_LOST = 15,
	NVML_ERROR_UNKNOWN = 999,
};

typedef struct { int index; } fake_device;
typedef fake_device *nvmlDevice_t;

typedef struct {
	char busIdLegacy[16];
	unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
	char busId[32];
} nvmlPciInfo_t;

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;

static fake_device devices[2] = {{0}, {1}};
static int initialised;

nvmlReturn_t nvmlInit_v2(void) {
#ifdef FAKE_INIT_FAILS
	return NVML_ERROR_DRIVER_NOT_LOADED;
#endif
	initialised = 1;
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void) {
	if (!initialised) return NVML_ERROR_UNINITIALIZED;
	initialised = 0;
	return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t r) {
	switch (r) {
	case NVML_SUCCESS: return "Success";
	case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
	case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
	case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
	case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
	case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
	default: return "Unknown Error";
	}
}

#define NEED_INIT() do { if (!initialised) return NVML_ERROR_UNINITIALIZED; } while (0)

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
	NEED_INIT();
#ifdef FAKE_ERRORS
	return NVML_ERROR_UNKNOWN;
#endif
	snprintf(version, length, "550.54.15");
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v) {
	NEED_INIT();
	*v = 12040;
	return NVML_SUCCESS;
}

#ifndef FAKE_NO_COUNT
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *n) {
	NEED_INIT();
	*n = 2;
	return NVML_SUCCESS;
}
#endif

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d) {
	NEED_INIT();
	if (i >= 2) return NVML_ERROR_INVALID_ARGUMENT;
	*d = &devices[i];
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *p) {
	NEED_INIT();
#ifdef FAKE_ERRORS
	if (d->index == 1) return NVML_ERROR_GPU_IS_LOST;
#endif
	memset(p, 0, sizeof *p);
	p->bus = d->index == 0 ? 0x01 : 0x41;
	p->pciDeviceId = 0x233010de; /* device << 16 | vendor */
	p->pciSubSystemId = 0x16c110de;
	snprintf(p->busId, sizeof p->busId, "00000000:%02X:00.0", p->bus);
	snprintf(p->busIdLegacy, sizeof p->busIdLegacy, "0000:%02X:00.0", p->bus);
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int length) {
	NEED_INIT();
	(void)d;
	snprintf(name, length, "NVIDIA H100 80GB HBM3");
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
	NEED_INIT();
#ifdef FAKE_ERRORS
	return NVML_ERROR_UNKNOWN;
#endif
	m->total = 85520809984ULL; /* 81559 MiB */
	m->used = d->index == 0 ? 62914560000ULL : 553648128ULL;
	m->free = m->total - m->used;
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
	NEED_INIT();
#ifdef FAKE_ERRORS
	return NVML_ERROR_NOT_SUPPORTED;
#endif
	u->gpu = d->index == 0 ? 87 : 0;
	u->memory = d->index == 0 ? 41 : 0;
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned int *t) {
	NEED_INIT();
	if (sensor != 0) return NVML_ERROR_INVALID_ARGUMENT;
#ifdef FAKE_ERRORS
	return NVML_ERROR_GPU_IS_LOST;
#endif
	*t = d->index == 0 ? 63 : 34;
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *mw) {
	NEED_INIT();
	*mw = d->index == 0 ? 512345 : 71250;
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t d, int *major, int *minor) {
	NEED_INIT();
	(void)d;
	*major = 9;
	*minor = 0;
	return NVML_SUCCESS;
}
