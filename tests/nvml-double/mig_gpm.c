/* MIG devices and GPM (GPU Performance Monitoring) samples and metrics. */
#include "nvml_double.h"

API nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *current, unsigned int *pending) {
    QUERY(device, current, "mig mig_mode");
    if (!pending) return leave(NVML_ERROR_INVALID_ARGUMENT);
    *current = *pending = g->mig ? 1 : 0;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count) {
    QUERY(device, count, "mig mig_device_count");
    *count = (unsigned int)(g->mig_slots < MAX_MIG ? g->mig_slots : MAX_MIG);
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index, nvmlDevice_t *mig) {
    QUERY_AT(device, mig, "mig mig_device", (int)index);
    if (!g->mig || index >= g->mig_slots || index >= MAX_MIG) return leave(NVML_ERROR_INVALID_ARGUMENT);
    if (!g->migs[index].uuid[0]) return leave(NVML_ERROR_NOT_FOUND);
    mig_handles[device->index][index] = (struct nvmlDevice_st){device->index, (int)index};
    *mig = &mig_handles[device->index][index];
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id) {
    MIG_QUERY(device, id);
    if (!m) return leave(NVML_ERROR_NOT_SUPPORTED);
    *id = m->gi;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t device, unsigned int *id) {
    MIG_QUERY(device, id);
    if (!m) return leave(NVML_ERROR_NOT_SUPPORTED);
    *id = m->ci;
    return leave(NVML_SUCCESS);
}

/* ---- GPM (GPU Performance Monitoring, Hopper and later) ---- */
#define NVML_GPM_METRICS_GET_VERSION 1
#define NVML_GPM_SUPPORT_VERSION 1

typedef struct gpm_sample { unsigned int gpu, gi, taken; struct timespec at; } *nvmlGpmSample_t;

typedef struct {
    unsigned int metricId;
    nvmlReturn_t nvmlReturn;
    double value;
    struct { char *shortName; char *longName; char *unit; } metricInfo;
} nvmlGpmMetric_t;

typedef struct {
    unsigned int version;
    unsigned int numMetrics;
    nvmlGpmSample_t sample1;
    nvmlGpmSample_t sample2;
    nvmlGpmMetric_t metrics[GPM_METRIC_MAX];
} nvmlGpmMetricsGet_t;

typedef struct { unsigned int version; unsigned int isSupportedDevice; } nvmlGpmSupport_t;

API nvmlReturn_t nvmlGpmQueryDeviceSupport(nvmlDevice_t device, nvmlGpmSupport_t *support) {
    QUERY(device, support, "gpm");
    if (support->version != NVML_GPM_SUPPORT_VERSION) return leave(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    support->isSupportedDevice = g->gpm ? 1 : 0;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlGpmSampleAlloc(nvmlGpmSample_t *sample) {
    enter();
    if (!init_count) return leave(NVML_ERROR_UNINITIALIZED);
    if (!sample) return leave(NVML_ERROR_INVALID_ARGUMENT);
    *sample = calloc(1, sizeof **sample);
    return leave(*sample ? NVML_SUCCESS : NVML_ERROR_UNKNOWN);
}

API nvmlReturn_t nvmlGpmSampleFree(nvmlGpmSample_t sample) {
    enter();
    free(sample);
    return leave(NVML_SUCCESS);
}

static nvmlReturn_t take_sample(nvmlDevice_t device, unsigned int gi, nvmlGpmSample_t sample) {
    QUERY(device, sample, "gpm");
    if (!g->gpm || (gi != 0xFFFFFFFF && !g->gpm_mig)) return leave(NVML_ERROR_NOT_SUPPORTED);
    *sample = (struct gpm_sample){device->index, gi, 1, {0, 0}};
    clock_gettime(CLOCK_MONOTONIC, &sample->at);
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlGpmSampleGet(nvmlDevice_t device, nvmlGpmSample_t sample) {
    return take_sample(device, 0xFFFFFFFF, sample);
}

API nvmlReturn_t nvmlGpmMigSampleGet(nvmlDevice_t device, unsigned int gpu_instance, nvmlGpmSample_t sample) {
    return take_sample(device, gpu_instance, sample);
}

/* The configured value of each metric (what the hardware counters would
 * yield between the two samples); NOT_SUPPORTED for metrics not configured. */
API nvmlReturn_t nvmlGpmMetricsGet(nvmlGpmMetricsGet_t *request) {
    enter();
    if (!init_count) return leave(NVML_ERROR_UNINITIALIZED);
    if (!request) return leave(NVML_ERROR_INVALID_ARGUMENT);
    if (request->version != NVML_GPM_METRICS_GET_VERSION) return leave(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    nvmlGpmSample_t a = request->sample1, b = request->sample2;
    if (!a || !b || !a->taken || !b->taken || a->gpu != b->gpu || a->gi != b->gi ||
        request->numMetrics > GPM_METRIC_MAX || a->gpu >= cfg.gpu_count)
        return leave(NVML_ERROR_INVALID_ARGUMENT);
    static char short_name[] = "metric", long_name[] = "GPM metric", unit[] = "%";
    struct gpu *g = &cfg.gpus[a->gpu];
    for (unsigned int i = 0; i < request->numMetrics; i++) {
        nvmlGpmMetric_t *metric = &request->metrics[i];
        unsigned int id = metric->metricId;
        int supported = id <= GPM_METRIC_MAX && g->gpm_value[id] == g->gpm_value[id];
        metric->nvmlReturn = supported ? NVML_SUCCESS : NVML_ERROR_NOT_SUPPORTED;
        metric->value = supported ? g->gpm_value[id] : 0;
        metric->metricInfo.shortName = short_name;
        metric->metricInfo.longName = long_name;
        metric->metricInfo.unit = unit;
    }
    return leave(NVML_SUCCESS);
}
