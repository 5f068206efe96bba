/* Event sets: XID and ECC events queued by the config, delivered by
 * nvmlEventSetWait_v2. */
#include "nvml_double.h"

typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType;
    unsigned long long eventData;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlEventData_t;

typedef struct event_set { unsigned long long registered[MAX_GPUS]; } *nvmlEventSet_t;

API nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t device, unsigned long long *types) {
    QUERY(device, types, "events");
    *types = g->supported_events;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    enter();
    if (!init_count) return leave(NVML_ERROR_UNINITIALIZED);
    if (!set) return leave(NVML_ERROR_INVALID_ARGUMENT);
    *set = calloc(1, sizeof **set);
    return leave(*set ? NVML_SUCCESS : NVML_ERROR_UNKNOWN);
}

API nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long types, nvmlEventSet_t set) {
    QUERY(device, set, "events register_events");
    if (types & ~g->supported_events) return leave(NVML_ERROR_NOT_SUPPORTED);
    set->registered[device->index] |= types;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    enter();
    free(set);
    return leave(NVML_SUCCESS);
}

/* Takes the first queued event of a GPU and type registered in `set`. */
static int take_event(nvmlEventSet_t set, nvmlEventData_t *data) {
    for (unsigned int i = 0; i < queued; i++) {
        struct event e = queue[i];
        if (e.gpu >= cfg.gpu_count || !(set->registered[e.gpu] & e.type)) continue;
        memmove(&queue[i], &queue[i + 1], (queued - i - 1) * sizeof *queue);
        queued--;
        handles[e.gpu] = (struct nvmlDevice_st){e.gpu, -1};
        *data = (nvmlEventData_t){&handles[e.gpu], e.type, e.data, 0xFFFFFFFF, 0xFFFFFFFF};
        return 1;
    }
    return 0;
}

/* Blocks on a condition variable, as the driver blocks in the kernel: a
 * waiting thread costs nothing. Events queued by a config reload (which any
 * other NVML call triggers) wake it. */
API nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeout_ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    enter();
    for (;;) {
        if (!init_count) return leave(NVML_ERROR_UNINITIALIZED);
        if (!set || !data) return leave(NVML_ERROR_INVALID_ARGUMENT);
        if (init_generation != cfg.driver_generation) return leave(cfg.stale_error);
        if (take_event(set, data)) return leave(NVML_SUCCESS);
        if (pthread_cond_timedwait(&config_loaded, &lock, &deadline) == ETIMEDOUT) return leave(NVML_ERROR_TIMEOUT);
    }
}
