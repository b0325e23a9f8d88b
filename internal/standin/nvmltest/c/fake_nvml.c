// A stand-in libnvidia-ml.so.1 for machines without a GPU: the C API the
// agent calls, answering with the fixture of pkg/gpu/recorded.go (the
// reference RTX 3080 Ti). nvmltest.Build compiles it with the system C
// compiler, so the real binding (dlopen, dlsym, struct layouts, buffer
// growth) runs here. GPUSLICE_FAKE_NVML_INIT=<code> makes nvmlInit_v2 fail
// with code; GPUSLICE_FAKE_NVML_PROCESSES=<n> replaces the processes with n
// compute processes, PIDs 100000 up, 64 MiB each (bench/agent).
//
// State mode (the real node): GPUSLICE_FAKE_NVML_STATE=<file>, or the
// path compiled in as FAKE_NVML_STATE, names a file of "PID MIB" lines,
// host PIDs of real processes. Only the PIDs that still exist under the
// proc root (GPUSLICE_FAKE_NVML_PROC_ROOT, default /proc) are reported, as
// compute processes; the GPU's used memory is their sum, so a killed
// process's memory comes back as free, as the driver frees it.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef int nvmlReturn_t;
typedef void *nvmlDevice_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct {
	unsigned int pid;
	unsigned long long usedGpuMemory;
	unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

#define MIB (1ULL << 20)
static int device; // the handle is its address
static int initialized;

nvmlReturn_t nvmlInit_v2(void) {
	const char *fail = getenv("GPUSLICE_FAKE_NVML_INIT");
	if (fail && *fail) return atoi(fail);
	initialized = 1;
	return 0;
}
nvmlReturn_t nvmlShutdown(void) { if (!initialized) return 1; initialized = 0; return 0; }

static nvmlReturn_t copy(const char *s, char *buf, unsigned int len) {
	if (!initialized) return 1;
	if (strlen(s) + 1 > len) return 7;
	strcpy(buf, s);
	return 0;
}
nvmlReturn_t nvmlSystemGetDriverVersion(char *buf, unsigned int len) { return copy("550.120", buf, len); }
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *c) { if (!initialized) return 1; *c = 1; return 0; }
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d) {
	if (!initialized) return 1;
	if (i != 0) return 2;
	*d = &device;
	return 0;
}
nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *buf, unsigned int len) { return copy("GPU-2f7c1b8e-5a3d-4e9f-b6c2-8d1e0a4f7b93", buf, len); }
nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *buf, unsigned int len) { return copy("NVIDIA GeForce RTX 3080 Ti", buf, len); }
#ifndef FAKE_NVML_STATE
#define FAKE_NVML_STATE ""
#endif
#define MAX_STATE 1024
static nvmlProcessInfo_t live[MAX_STATE];

static const char *state_file(void) {
	const char *f = getenv("GPUSLICE_FAKE_NVML_STATE");
	return f && *f ? f : FAKE_NVML_STATE;
}

// read_state fills live with the state file's processes that exist; a
// missing file is a GPU without processes.
static unsigned int read_state(void) {
	const char *root = getenv("GPUSLICE_FAKE_NVML_PROC_ROOT");
	if (!root || !*root) root = "/proc";
	FILE *f = fopen(state_file(), "r");
	if (!f) return 0;
	unsigned int n = 0, pid;
	unsigned long long mib;
	char path[4096];
	struct stat st;
	while (n < MAX_STATE && fscanf(f, "%u %llu", &pid, &mib) == 2) {
		snprintf(path, sizeof path, "%s/%u", root, pid);
		if (stat(path, &st) != 0) continue;
		live[n++] = (nvmlProcessInfo_t){pid, mib * MIB, 0xFFFFFFFF, 0xFFFFFFFF};
	}
	fclose(f);
	return n;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
	if (!initialized || d != &device) return 1;
	m->total = 12288 * MIB;
	if (*state_file()) {
		m->used = 0;
		for (unsigned int i = 0, n = read_state(); i < n; i++) m->used += live[i].usedGpuMemory;
		if (m->used > m->total) m->used = m->total;
	} else {
		m->used = (4 + 1180 + 1126 + 8586 + 243) * MIB;
	}
	m->free = m->total - m->used;
	return 0;
}
nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
	if (!initialized) return 1;
	u->gpu = 37;
	u->memory = 21;
	return 0;
}
nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned int *t) {
	if (!initialized) return 1;
	if (sensor != 0) return 2;
	*t = 61;
	return 0;
}

// list answers like NVML: too small a buffer gets INSUFFICIENT_SIZE and
// the count needed.
static nvmlReturn_t list(const nvmlProcessInfo_t *procs, unsigned int n, unsigned int *count, nvmlProcessInfo_t *out) {
	if (!initialized) return 1;
	if (*count < n) { *count = n; return 7; }
	memcpy(out, procs, n * sizeof *procs);
	*count = n;
	return 0;
}
static const nvmlProcessInfo_t compute[] = {
	{27340, 1180 * MIB, 0xFFFFFFFF, 0xFFFFFFFF},
	{31877, 1126 * MIB, 0xFFFFFFFF, 0xFFFFFFFF},
	{48213, 8586 * MIB, 0xFFFFFFFF, 0xFFFFFFFF},
};
static const nvmlProcessInfo_t graphics[] = {
	{1893, 4 * MIB, 0xFFFFFFFF, 0xFFFFFFFF},
	{31877, 1126 * MIB, 0xFFFFFFFF, 0xFFFFFFFF},
};
static nvmlProcessInfo_t many[1024];

static unsigned int generated(void) {
	const char *n = getenv("GPUSLICE_FAKE_NVML_PROCESSES");
	if (!n || !*n) return 0;
	unsigned int count = (unsigned int)atoi(n);
	if (count > 1024) count = 1024;
	for (unsigned int i = 0; i < count; i++) {
		many[i] = (nvmlProcessInfo_t){100000 + i, 64 * MIB, 0xFFFFFFFF, 0xFFFFFFFF};
	}
	return count;
}

// Only _v2 for compute, as drivers R450-R495 have it: the binding falls back.
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t d, unsigned int *c, nvmlProcessInfo_t *p) {
	if (*state_file()) return list(live, read_state(), c, p);
	unsigned int n = generated();
	return n ? list(many, n, c, p) : list(compute, 3, c, p);
}
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t d, unsigned int *c, nvmlProcessInfo_t *p) {
	return generated() || *state_file() ? list(graphics, 0, c, p) : list(graphics, 2, c, p);
}
