/*
 * Stand-ins for the vendor runtimes exo probes, built by the tests with gcc. Each variant
 * exports the entry points of one runtime with its C types and return codes:
 *   -DCUDA_OK          libcuda: cuInit succeeds, two devices, driver API 12.4
 *   -DCUDA_NO_DEVICE   libcuda: cuInit answers CUDA_ERROR_NO_DEVICE
 *   -DHIP_OK           libamdhip64: one device, HIP 6.0
 *   -DZE_UNINIT        libze_loader: zeInit fails (no Level Zero driver installed)
 *   -DOCL_CPU_ONLY     libOpenCL: one platform with only a CPU device (PoCL-like)
 *   -DOCL_NO_PLATFORM  libOpenCL: the ICD loader without any ICD
 */
#include <stddef.h>
#include <stdint.h>

#if defined(CUDA_OK) || defined(CUDA_NO_DEVICE)
int cuDriverGetVersion(int *v) { *v = 12040; return 0; }
int cuInit(unsigned int flags) {
	(void)flags;
#ifdef CUDA_NO_DEVICE
	return 100; /* CUDA_ERROR_NO_DEVICE */
#else
	return 0;
#endif
}
int cuDeviceGetCount(int *n) { *n = 2; return 0; }
#endif

#ifdef HIP_OK
int hipRuntimeGetVersion(int *v) { *v = 60032830; return 0; }
int hipGetDeviceCount(int *n) { *n = 1; return 0; }
#endif

#ifdef ZE_UNINIT
uint32_t zeInit(uint32_t flags) { (void)flags; return 0x78000001u; /* ZE_RESULT_ERROR_UNINITIALIZED */ }
uint32_t zeDriverGet(uint32_t *n, void **drivers) { (void)drivers; *n = 0; return 0; }
uint32_t zeDeviceGet(void *driver, uint32_t *n, void **devices) { (void)driver; (void)devices; *n = 0; return 0; }
#endif

#if defined(OCL_CPU_ONLY) || defined(OCL_NO_PLATFORM)
typedef int32_t cl_int;
typedef uint32_t cl_uint;
typedef uint64_t cl_device_type;
static int platform_token;
cl_int clGetPlatformIDs(cl_uint num_entries, void **platforms, cl_uint *num_platforms) {
#ifdef OCL_NO_PLATFORM
	(void)num_entries; (void)platforms; (void)num_platforms;
	return -1001; /* CL_PLATFORM_NOT_FOUND_KHR */
#else
	if (num_platforms) *num_platforms = 1;
	if (platforms && num_entries >= 1) platforms[0] = &platform_token;
	return 0;
#endif
}
cl_int clGetDeviceIDs(void *platform, cl_device_type type, cl_uint num_entries, void **devices, cl_uint *num_devices) {
	(void)num_entries; (void)devices;
	if (platform != &platform_token) return -32; /* CL_INVALID_PLATFORM */
	if (type & (1 << 1)) { if (num_devices) *num_devices = 1; return 0; } /* CL_DEVICE_TYPE_CPU */
	return -1; /* CL_DEVICE_NOT_FOUND */
}
#endif
