/*
 * NVML test double: a libnvidia-ml.so.1 for machines without a GPU.
 *
 * It exports the NVML entry points the exporter uses, with NVML's own
 * signatures, struct layouts and return codes (see nvml.h), and nothing else:
 * an entry point that is not implemented here is absent, as with an older
 * driver. Built with -DLEGACY_DRIVER it also lacks the symbols a pre-R450
 * driver lacks (energy counter, per-fan speed).
 *
 * Values come from the file named by NVML_DOUBLE_CONFIG, re-read whenever it
 * changes, so a test can change readings or inject faults while the exporter
 * runs. One "key = value" per line, '#' starts a comment:
 *
 *   gpu_count = 2                     number of GPUs (default 1, at most 64)
 *   init_error = DRIVER_NOT_LOADED    nvmlInit_v2 fails with this code
 *   driver_version = 550.54.15
 *   nvml_version = 12.550.54.15
 *   cuda_driver_version = 12040
 *   delay_ms = 0                      every query sleeps this long first
 *   call_log = /path                  appends "nvmlInit_v2 <rc>" and "nvmlShutdown"
 *   gpu.N.<field> = value             see struct gpu below for fields
 *   gpu.N.fail = GPU_IS_LOST          every query of GPU N returns this code
 *   gpu.N.unsupported = power_usage fan_speed
 *                                     these queries return NOT_SUPPORTED
 *
 * Defaults differ per GPU index so that tests can tell GPUs apart.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define API __attribute__((visibility("default")))

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

static const struct { const char *name; nvmlReturn_t code; } RETURN_NAMES[] = {
    {"SUCCESS", 0}, {"UNINITIALIZED", 1}, {"INVALID_ARGUMENT", 2},
    {"NOT_SUPPORTED", 3}, {"NO_PERMISSION", 4}, {"INSUFFICIENT_SIZE", 7},
    {"DRIVER_NOT_LOADED", 9}, {"TIMEOUT", 10}, {"LIBRARY_NOT_FOUND", 12},
    {"GPU_IS_LOST", 15}, {"RESET_REQUIRED", 16}, {"LIB_RM_VERSION_MISMATCH", 18},
    {"ARGUMENT_VERSION_MISMATCH", 25}, {"UNKNOWN", 999},
};

typedef struct nvmlDevice_st { unsigned int index; } *nvmlDevice_t;

typedef struct nvmlPciInfo_st {
    char busIdLegacy[16];
    unsigned int domain;
    unsigned int bus;
    unsigned int device;
    unsigned int pciDeviceId;
    unsigned int pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct nvmlMemory_v2_st {
    unsigned int version;
    unsigned long long total;
    unsigned long long reserved;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_v2_t;
#define nvmlMemory_v2 ((unsigned int)(sizeof(nvmlMemory_v2_t) | (2 << 24)))

typedef struct nvmlUtilization_st { unsigned int gpu; unsigned int memory; } nvmlUtilization_t;

#define NVML_TEMPERATURE_GPU 0
#define NVML_CLOCK_COUNT 4 /* graphics, sm, mem, video */
#define NVML_PSTATE_UNKNOWN 32
#define MAX_GPUS 64
#define MAX_FANS 8

struct gpu {
    char name[96], uuid[96], serial[32];
    unsigned int pci_bus;
    unsigned int temperature;        /* degrees C */
    unsigned int power_usage;        /* mW */
    unsigned int power_limit;        /* mW */
    unsigned long long energy;       /* mJ */
    unsigned long long memory_total, memory_reserved, memory_used; /* bytes */
    unsigned int utilization_gpu, utilization_memory, encoder, decoder; /* % */
    unsigned int clock[NVML_CLOCK_COUNT], max_clock[NVML_CLOCK_COUNT]; /* MHz */
    unsigned int fans, fan_speed[MAX_FANS]; /* % */
    unsigned int pstate;
    nvmlReturn_t fail;
    char unsupported[256];
};

static struct {
    unsigned int gpu_count;
    nvmlReturn_t init_error;
    char driver_version[80], nvml_version[80];
    int cuda_driver_version;
    unsigned int delay_ms;
    char call_log[512];
    struct gpu gpus[MAX_GPUS];
} cfg;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct nvmlDevice_st handles[MAX_GPUS];
static int init_count;
static struct stat loaded_stat;
static int loaded;

static void defaults(void) {
    memset(&cfg, 0, sizeof cfg);
    cfg.gpu_count = 1;
    strcpy(cfg.driver_version, "550.54.15");
    strcpy(cfg.nvml_version, "12.550.54.15");
    cfg.cuda_driver_version = 12040;
    for (unsigned int i = 0; i < MAX_GPUS; i++) {
        struct gpu *g = &cfg.gpus[i];
        strcpy(g->name, "NVIDIA A100-SXM4-80GB");
        snprintf(g->uuid, sizeof g->uuid, "GPU-00000000-0000-4000-8000-%012u", i);
        snprintf(g->serial, sizeof g->serial, "13240000%05u", i);
        g->pci_bus = 0x10 + i;
        g->temperature = 40 + i;
        g->power_usage = 100000 + 1000 * i;
        g->power_limit = 400000;
        g->energy = 123456789ULL + 1000ULL * i;
        g->memory_total = 85899345920ULL;
        g->memory_reserved = 536870912ULL;
        g->memory_used = 1073741824ULL * (i + 1);
        g->utilization_gpu = 50 + i;
        g->utilization_memory = 20 + i;
        g->encoder = 0;
        g->decoder = 5;
        unsigned int clocks[] = {1410, 1410, 1593, 1275}, max[] = {1410, 1410, 1593, 1410};
        memcpy(g->clock, clocks, sizeof clocks);
        memcpy(g->max_clock, max, sizeof max);
        g->fans = 2;
        g->fan_speed[0] = 30 + i;
        g->fan_speed[1] = 35 + i;
        g->pstate = 0;
    }
}

static nvmlReturn_t return_code(const char *value) {
    for (size_t i = 0; i < sizeof RETURN_NAMES / sizeof *RETURN_NAMES; i++)
        if (strcmp(value, RETURN_NAMES[i].name) == 0) return RETURN_NAMES[i].code;
    return (nvmlReturn_t)strtol(value, NULL, 0);
}

static void copy(char *dst, size_t size, const char *src) { snprintf(dst, size, "%s", src); }

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *end = s + strlen(s);
    while (end > s && strchr(" \t\r\n", end[-1])) *--end = 0;
    return s;
}

static void set_gpu(struct gpu *g, const char *key, const char *v) {
    unsigned long long n = strtoull(v, NULL, 0);
    unsigned int k;
    if (!strcmp(key, "name")) copy(g->name, sizeof g->name, v);
    else if (!strcmp(key, "uuid")) copy(g->uuid, sizeof g->uuid, v);
    else if (!strcmp(key, "serial")) copy(g->serial, sizeof g->serial, v);
    else if (!strcmp(key, "pci_bus")) g->pci_bus = n;
    else if (!strcmp(key, "temperature")) g->temperature = n;
    else if (!strcmp(key, "power_usage")) g->power_usage = n;
    else if (!strcmp(key, "power_limit")) g->power_limit = n;
    else if (!strcmp(key, "energy")) g->energy = n;
    else if (!strcmp(key, "memory_total")) g->memory_total = n;
    else if (!strcmp(key, "memory_reserved")) g->memory_reserved = n;
    else if (!strcmp(key, "memory_used")) g->memory_used = n;
    else if (!strcmp(key, "utilization_gpu")) g->utilization_gpu = n;
    else if (!strcmp(key, "utilization_memory")) g->utilization_memory = n;
    else if (!strcmp(key, "encoder")) g->encoder = n;
    else if (!strcmp(key, "decoder")) g->decoder = n;
    else if (sscanf(key, "clock.%u", &k) == 1 && k < NVML_CLOCK_COUNT) g->clock[k] = n;
    else if (sscanf(key, "max_clock.%u", &k) == 1 && k < NVML_CLOCK_COUNT) g->max_clock[k] = n;
    else if (!strcmp(key, "fans")) g->fans = n < MAX_FANS ? n : MAX_FANS;
    else if (sscanf(key, "fan_speed.%u", &k) == 1 && k < MAX_FANS) g->fan_speed[k] = n;
    else if (!strcmp(key, "pstate")) g->pstate = n;
    else if (!strcmp(key, "fail")) g->fail = return_code(v);
    else if (!strcmp(key, "unsupported")) snprintf(g->unsupported, sizeof g->unsupported, " %s ", v);
    else fprintf(stderr, "nvml double: unknown key gpu.N.%s\n", key);
}

/* Re-reads the config file when it changed since the last call. */
static void reload(void) {
    const char *path = getenv("NVML_DOUBLE_CONFIG");
    struct stat st;
    if (!path || stat(path, &st) != 0) {
        if (!loaded) defaults();
        loaded = 1;
        return;
    }
    if (loaded && st.st_ino == loaded_stat.st_ino && st.st_size == loaded_stat.st_size &&
        st.st_mtim.tv_sec == loaded_stat.st_mtim.tv_sec && st.st_mtim.tv_nsec == loaded_stat.st_mtim.tv_nsec)
        return;
    FILE *f = fopen(path, "r");
    if (!f) return;
    defaults();
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *eq = strchr(line, '=');
        if (!eq) continue;
        *eq = 0;
        char *key = trim(line), *value = trim(eq + 1);
        unsigned int index;
        int used;
        if (sscanf(key, "gpu.%u.%n", &index, &used) == 1 && used > 0 && index < MAX_GPUS)
            set_gpu(&cfg.gpus[index], key + used, value);
        else if (!strcmp(key, "gpu_count")) {
            cfg.gpu_count = strtoul(value, NULL, 0);
            if (cfg.gpu_count > MAX_GPUS) cfg.gpu_count = MAX_GPUS;
        } else if (!strcmp(key, "init_error")) cfg.init_error = return_code(value);
        else if (!strcmp(key, "driver_version")) copy(cfg.driver_version, sizeof cfg.driver_version, value);
        else if (!strcmp(key, "nvml_version")) copy(cfg.nvml_version, sizeof cfg.nvml_version, value);
        else if (!strcmp(key, "cuda_driver_version")) cfg.cuda_driver_version = strtol(value, NULL, 0);
        else if (!strcmp(key, "delay_ms")) cfg.delay_ms = strtoul(value, NULL, 0);
        else if (!strcmp(key, "call_log")) copy(cfg.call_log, sizeof cfg.call_log, value);
        else fprintf(stderr, "nvml double: unknown key %s\n", key);
    }
    fclose(f);
    loaded_stat = st;
    loaded = 1;
}

static void log_call(const char *line) {
    if (!cfg.call_log[0]) return;
    FILE *f = fopen(cfg.call_log, "a");
    if (f) {
        fprintf(f, "%s\n", line);
        fclose(f);
    }
}

/* Sleeps for delay_ms (outside the lock), then takes the lock with a fresh config. */
static void enter(void) {
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

static nvmlReturn_t leave(nvmlReturn_t rc) {
    pthread_mutex_unlock(&lock);
    return rc;
}

/* Common checks of a device query; on success *g is the GPU. */
static nvmlReturn_t device_query(nvmlDevice_t device, const void *out, const char *field, struct gpu **g) {
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    if (!device || device < handles || device >= handles + MAX_GPUS || !out) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->index >= cfg.gpu_count) return NVML_ERROR_INVALID_ARGUMENT;
    *g = &cfg.gpus[device->index];
    if ((*g)->fail) return (*g)->fail;
    char word[64];
    snprintf(word, sizeof word, " %s ", field);
    if (strstr((*g)->unsupported, word)) return NVML_ERROR_NOT_SUPPORTED;
    return NVML_SUCCESS;
}

#define QUERY(device, out, field)                            \
    struct gpu *g;                                           \
    enter();                                                 \
    nvmlReturn_t rc = device_query(device, out, field, &g);  \
    if (rc != NVML_SUCCESS) return leave(rc);

static nvmlReturn_t copy_string(char *dst, unsigned int length, const char *src) {
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(dst, src);
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlInit_v2(void) {
    pthread_mutex_lock(&lock);
    reload();
    nvmlReturn_t rc = cfg.init_error;
    if (rc == NVML_SUCCESS) init_count++;
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
    for (size_t i = 0; i < sizeof RETURN_NAMES / sizeof *RETURN_NAMES; i++)
        if (RETURN_NAMES[i].code == rc) return RETURN_NAMES[i].name;
    return "Unknown Error";
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
    handles[index].index = index;
    *device = &handles[index];
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    QUERY(device, uuid, "uuid");
    return leave(copy_string(uuid, length, g->uuid));
}

API nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    QUERY(device, name, "name");
    return leave(copy_string(name, length, g->name));
}

API nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t device, char *serial, unsigned int length) {
    QUERY(device, serial, "serial");
    return leave(copy_string(serial, length, g->serial));
}

API nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    QUERY(device, pci, "pci_info");
    memset(pci, 0, sizeof *pci);
    pci->bus = g->pci_bus;
    pci->pciDeviceId = 0x20b210de;
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "0000:%02X:00.0", g->pci_bus);
    snprintf(pci->busId, sizeof pci->busId, "00000000:%02X:00.0", g->pci_bus);
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensor, unsigned int *temp) {
    QUERY(device, temp, "temperature");
    if (sensor != NVML_TEMPERATURE_GPU) return leave(NVML_ERROR_INVALID_ARGUMENT);
    *temp = g->temperature;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    QUERY(device, power, "power_usage");
    *power = g->power_usage;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit) {
    QUERY(device, limit, "power_limit");
    *limit = g->power_limit;
    return leave(NVML_SUCCESS);
}

#ifndef LEGACY_DRIVER
API nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy) {
    QUERY(device, energy, "energy");
    *energy = g->energy;
    return leave(NVML_SUCCESS);
}
#endif

API nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    QUERY(device, memory, "memory");
    if (memory->version != nvmlMemory_v2) return leave(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    memory->total = g->memory_total;
    memory->reserved = g->memory_reserved;
    memory->used = g->memory_used;
    memory->free = g->memory_total - g->memory_reserved - g->memory_used;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization) {
    QUERY(device, utilization, "utilization");
    utilization->gpu = g->utilization_gpu;
    utilization->memory = g->utilization_memory;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetEncoderUtilization(nvmlDevice_t device, unsigned int *utilization, unsigned int *period_us) {
    QUERY(device, utilization, "encoder");
    if (!period_us) return leave(NVML_ERROR_INVALID_ARGUMENT);
    *utilization = g->encoder;
    *period_us = 167000;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetDecoderUtilization(nvmlDevice_t device, unsigned int *utilization, unsigned int *period_us) {
    QUERY(device, utilization, "decoder");
    if (!period_us) return leave(NVML_ERROR_INVALID_ARGUMENT);
    *utilization = g->decoder;
    *period_us = 167000;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, int type, unsigned int *clock) {
    QUERY(device, clock, "clock");
    if (type < 0 || type >= NVML_CLOCK_COUNT) return leave(NVML_ERROR_INVALID_ARGUMENT);
    *clock = g->clock[type];
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t device, int type, unsigned int *clock) {
    QUERY(device, clock, "max_clock");
    if (type < 0 || type >= NVML_CLOCK_COUNT) return leave(NVML_ERROR_INVALID_ARGUMENT);
    *clock = g->max_clock[type];
    return leave(NVML_SUCCESS);
}

#ifndef LEGACY_DRIVER
API nvmlReturn_t nvmlDeviceGetNumFans(nvmlDevice_t device, unsigned int *fans) {
    QUERY(device, fans, "fans");
    *fans = g->fans;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetFanSpeed_v2(nvmlDevice_t device, unsigned int fan, unsigned int *speed) {
    QUERY(device, speed, "fan_speed");
    if (fan >= g->fans) return leave(NVML_ERROR_INVALID_ARGUMENT);
    *speed = g->fan_speed[fan];
    return leave(NVML_SUCCESS);
}
#endif

API nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t device, int *state) {
    QUERY(device, state, "pstate");
    *state = g->pstate;
    return leave(NVML_SUCCESS);
}
