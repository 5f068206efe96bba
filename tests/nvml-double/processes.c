/* Running processes and their utilisation. */
#include "nvml_double.h"

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

typedef struct {
    unsigned int pid;
    unsigned long long timeStamp;
    unsigned int smUtil, memUtil, encUtil, decUtil;
} nvmlProcessUtilizationSample_t;

/* NVML's two-call pattern: with too small a buffer, the count needed and
 * INSUFFICIENT_SIZE. */
static nvmlReturn_t running_processes(nvmlDevice_t device, unsigned int *count, nvmlProcessInfo_t *infos, unsigned int graphics) {
    QUERY(device, count, graphics ? "graphics_processes" : "compute_processes");
    unsigned int n = 0;
    for (unsigned int i = 0; i < cfg.process_count; i++)
        if (cfg.processes[i].gpu == device->index && cfg.processes[i].graphics == graphics) {
            if (infos && n < *count) {
                struct process *p = &cfg.processes[i];
                infos[n] = (nvmlProcessInfo_t){p->pid, p->memory, p->gi, p->ci};
            }
            n++;
        }
    rc = n > *count ? NVML_ERROR_INSUFFICIENT_SIZE : NVML_SUCCESS;
    if (rc == NVML_SUCCESS && n && !infos) rc = NVML_ERROR_INVALID_ARGUMENT;
    *count = n;
    return leave(rc);
}

API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *count, nvmlProcessInfo_t *infos) {
    return running_processes(device, count, infos, 0);
}

API nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t device, unsigned int *count, nvmlProcessInfo_t *infos) {
    return running_processes(device, count, infos, 1);
}

/* One sample per process with some utilisation, recorded "now" (the driver
 * samples active processes continuously); NOT_FOUND when there is none newer
 * than last_seen. */
API nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t device, nvmlProcessUtilizationSample_t *samples,
                                                 unsigned int *count, unsigned long long last_seen) {
    QUERY(device, count, "process_utilization");
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    unsigned long long stamp = (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000;
    unsigned int n = 0;
    for (unsigned int i = 0; i < cfg.process_count; i++) {
        struct process *p = &cfg.processes[i];
        if (p->gpu != device->index || !(p->sm | p->mem | p->enc | p->dec) || stamp <= last_seen) continue;
        if (samples && n < *count) samples[n] = (nvmlProcessUtilizationSample_t){p->pid, stamp, p->sm, p->mem, p->enc, p->dec};
        n++;
    }
    if (!n) return leave(NVML_ERROR_NOT_FOUND);
    rc = !samples || n > *count ? NVML_ERROR_INSUFFICIENT_SIZE : NVML_SUCCESS;
    *count = n;
    return leave(rc);
}
