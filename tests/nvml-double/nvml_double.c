/* NVML's life (init, shutdown), system queries, device handles, and the
 * checks every device query makes. What the double is and its config keys:
 * nvml_double.h. */
#include "nvml_double.h"

pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
struct nvmlDevice_st handles[MAX_GPUS];
struct nvmlDevice_st mig_handles[MAX_GPUS][MAX_MIG];
int init_count;
/* After a "reload" (a new driver_generation in the config) sessions
 * initialised under an older one get stale_error. */
unsigned int init_generation;

static void log_call(const char *line) {
    if (!cfg.call_log[0]) return;
    FILE *f = fopen(cfg.call_log, "a");
    if (f) {
        fprintf(f, "%s\n", line);
        fclose(f);
    }
}

void enter(void) {
    pthread_mutex_lock(&lock);
    reload();
    unsigned int delay = cfg.delay_ms;
    pthread_mutex_unlock(&lock);
    if (delay) {
        struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&lock);
    reload();
}

nvmlReturn_t leave(nvmlReturn_t rc) {
    pthread_mutex_unlock(&lock);
    return rc;
}

nvmlReturn_t device_query(nvmlDevice_t device, const void *out, const char *names, int index, struct gpu **g) {
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    if (!device || device < handles || device >= handles + MAX_GPUS || !out) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->index >= cfg.gpu_count) return NVML_ERROR_INVALID_ARGUMENT;
    if (init_generation != cfg.driver_generation) return cfg.stale_error;
    *g = &cfg.gpus[device->index];
    if ((*g)->fail) return (*g)->fail;
    return query_rc(*g, names, index);
}

struct mig *mig_of(nvmlDevice_t device) {
    struct nvmlDevice_st *first = &mig_handles[0][0], *last = &mig_handles[MAX_GPUS - 1][MAX_MIG - 1];
    if (!init_count || device < first || device > last || device->index >= cfg.gpu_count) return NULL;
    struct mig *m = &cfg.gpus[device->index].migs[device->mig];
    return m->uuid[0] ? m : NULL;
}

nvmlReturn_t copy_string(char *dst, unsigned int length, const char *src) {
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(dst, src);
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlInit_v2(void) {
    pthread_mutex_lock(&lock);
    reload();
    /* UNKNOWN: nvml.h's code for an init failure that is not a missing driver or permission. */
    nvmlReturn_t rc = config_unusable ? NVML_ERROR_UNKNOWN : cfg.init_error;
    if (rc == NVML_SUCCESS) {
        init_count++;
        init_generation = cfg.driver_generation;
    }
    char line[64];
    snprintf(line, sizeof line, "nvmlInit_v2 %d", rc);
    log_call(line);
    return leave(rc);
}

API nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    return nvmlInit_v2();
}

API nvmlReturn_t nvmlShutdown(void) {
    pthread_mutex_lock(&lock);
    reload();
    if (!init_count) return leave(NVML_ERROR_UNINITIALIZED);
    init_count--;
    log_call("nvmlShutdown");
    return leave(NVML_SUCCESS);
}

API const char *nvmlErrorString(nvmlReturn_t rc) {
    const char *name = return_name(rc);
    return name ? name : "Unknown Error";
}

API nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    enter();
    if (!init_count) return leave(NVML_ERROR_UNINITIALIZED);
    return leave(copy_string(version, length, cfg.driver_version));
}

API nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    enter();
    return leave(copy_string(version, length, cfg.nvml_version));
}

API nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *version) {
    enter();
    if (!version) return leave(NVML_ERROR_INVALID_ARGUMENT);
    *version = cfg.cuda_driver_version;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    enter();
    if (!init_count) return leave(NVML_ERROR_UNINITIALIZED);
    if (!count) return leave(NVML_ERROR_INVALID_ARGUMENT);
    *count = cfg.gpu_count;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    enter();
    if (!init_count) return leave(NVML_ERROR_UNINITIALIZED);
    if (!device || index >= cfg.gpu_count) return leave(NVML_ERROR_INVALID_ARGUMENT);
    if (init_generation != cfg.driver_generation) return leave(cfg.stale_error);
    if (cfg.gpus[index].fail) return leave(cfg.gpus[index].fail);
    handles[index] = (struct nvmlDevice_st){index, -1};
    *device = &handles[index];
    return leave(NVML_SUCCESS);
}
