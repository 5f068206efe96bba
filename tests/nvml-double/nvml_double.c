/*
 * NVML test double: a libnvidia-ml.so.1 for machines without a GPU.
 *
 * It exports the NVML entry points the exporter uses, with NVML's own
 * signatures, struct layouts and return codes (see nvml.h), and nothing else:
 * an entry point that is not implemented here is absent, as with an older
 * driver. Built with -DLEGACY_DRIVER it also lacks the symbols a pre-R450
 * driver lacks (field values, per-fan speed, GPU fabric info).
 *
 * Values come from the file named by NVML_DOUBLE_CONFIG, re-read whenever it
 * changes, so a test can change readings or inject faults while the exporter
 * runs. One "key = value" per line, '#' starts a comment. NUM is decimal or
 * 0x hex; CODE is an NVML return code by name without NVML_ERROR_
 * (GPU_IS_LOST, NOT_SUPPORTED, UNKNOWN, ...) or by number. Every key:
 *
 *   gpu_count = 2              number of GPUs (default 1, at most 64)
 *   init_error = CODE          nvmlInit_v2 fails with this code
 *   driver_version = 550.54.15
 *   nvml_version = 12.550.54.15
 *   cuda_driver_version = 12040
 *   delay_ms = NUM             every query sleeps this long first
 *   call_log = /path           appends "nvmlInit_v2 <rc>" and "nvmlShutdown"
 *   field_log = /path          appends one line per nvmlDeviceGetFieldValues
 *                              call that reaches a GPU: "gpu=N" and each field
 *                              asked for as " ID:SCOPE", in the caller's order
 *   driver_generation = NUM    a driver reload: sessions initialised before it
 *                              get stale_error from every device query until
 *                              NVML is initialised again (nvmlShutdown, nvmlInit_v2)
 *   stale_error = CODE         (default UNKNOWN)
 *   fabric_info_max_version = 3   newest nvmlGpuFabricInfo struct the driver
 *                              knows; 2: v3 gets ARGUMENT_VERSION_MISMATCH, as
 *                              on R550-R575 drivers
 *   process.NAME = gpu=0 pid=4242 type=compute memory=NUM gi=1 ci=0 sm=50 mem=20 enc=0 dec=0
 *                              a running process (type compute or graphics;
 *                              memory in bytes; gi, ci its MIG instance, default
 *                              none; sm, mem, enc, dec its utilisation in %)
 *   synthetic_processes = GPU COUNT FIRST_PID   COUNT compute processes, 1 MiB and 1% SM each
 *
 *   Per GPU N (0-63); defaults differ per index so that tests can tell GPUs
 *   apart. Units are NVML's: degrees C, mW, mJ, bytes, %, MHz, ns.
 *   gpu.N.name, gpu.N.uuid, gpu.N.serial = text
 *   gpu.N.NAME = NUM, NAME one of GPU_NUMBERS:
 *     pci_bus; temperature, memory_temperature; power_usage, power_limit;
 *     energy (total consumption); memory_total, memory_reserved, memory_used;
 *     utilization_gpu, utilization_memory, encoder, decoder; fans (count);
 *     pstate (0-15, 32 unknown); pcie_generation, pcie_max_generation,
 *     pcie_width, pcie_max_width, pcie_replay (count); ecc_enabled (0/1);
 *     ecc_sbe_volatile, ecc_dbe_volatile, ecc_sbe_aggregate, ecc_dbe_aggregate;
 *     retired_sbe, retired_dbe, retired_pending (pages); remapped_cor,
 *     remapped_unc, remap_pending, remap_failure (rows); recovery_action
 *     (nvmlDeviceGpuRecoveryAction_t); clock_event_reasons,
 *     supported_clock_event_reasons, supported_events (bit masks); nvlinks
 *     (link count); mig (mode 0/1), mig_slots (MIG device count); gpm, gpm_mig
 *     (GPM supported on the GPU, per MIG instance: 0/1); fabric_* (below)
 *   gpu.N.NAME.K = NUM, NAME one of GPU_ARRAYS:
 *     clock.K, max_clock.K     K: 0 graphics, 1 SM, 2 memory, 3 video
 *     fan_speed.K              fan K < fans
 *     threshold.K              K: 0 shutdown, 1 slowdown, 2 memory max, 3 GPU max
 *     violation.K              time throttled, K: 0 power, 1 thermal, 2 sync
 *                              boost, 3 board limit, 4 low utilisation,
 *                              5 reliability, 6 app clocks, 7 base clocks
 *     nvlink_state.K (1 up), nvlink_crc_flit.K, nvlink_crc_data.K,
 *     nvlink_replay.K, nvlink_recovery.K     link K < nvlinks
 *   gpu.N.nvlink_fail.K = CODE every field of link K (state, errors, crc_data)
 *                              returns this code, as a link that cannot be read
 *   gpu.N.fail = CODE          every query of GPU N returns this code
 *   gpu.N.unsupported = power_usage fan_speed
 *                              these return NOT_SUPPORTED: query names (see
 *                              QUERY_NAMES) and field value names (GPU_FIELDS,
 *                              LINK_FIELDS, violation, nvlink_crc_data)
 *   gpu.N.xid = 79 48          queues these XID events, and
 *   gpu.N.ecc_events = single_bit double_bit   these ECC events, once each
 *                              time the file is (re)loaded
 *   gpu.N.mig_device.K = MIG-UUID gi=1 ci=0 profile=1g.10gb memory_total=NUM memory_used=NUM
 *                              MIG device slot K < mig_slots (empty: NOT_FOUND)
 *   gpu.N.gpm_value.ID = 42.5  GPM metric ID's value (unset: NOT_SUPPORTED)
 *   GPU fabric (nvmlDeviceGetGpuFabricInfoV; by default no fabric, as a PCIe
 *   GPU: SUCCESS with state 0; "unsupported = fabric" gives NOT_SUPPORTED):
 *   gpu.N.fabric_state = NUM   0 not supported, 1 not started, 2 in progress,
 *                              3 completed
 *   gpu.N.fabric_status = CODE the probe's result (default SUCCESS)
 *   gpu.N.fabric_clique_id = NUM
 *   gpu.N.fabric_cluster_uuid = 9c6f5af3-53bf-49b5-a436-b66766c413c3
 *   gpu.N.fabric_health_mask = 0x1aa   raw healthMask (default 0): 2-bit fields
 *                              (0 not supported, 1 true, 2 false) at bit 0
 *                              degraded bandwidth, 2 route recovery, 4 route
 *                              unhealthy, 6 access timeout recovery, 12
 *                              partition assigned; at bit 8 the 4-bit incorrect
 *                              configuration (0 not supported, 1 none, 2 system
 *                              GUID, 3 chassis serial, 4 no partition,
 *                              5 insufficient NVLinks, 6 incompatible GPU
 *                              firmware, 7 invalid location, 8 GPU state invalid);
 *                              0x1aa: all four false, configuration correct
 *   gpu.N.fabric_health_summary = NUM   v3 only: 0 not supported, 1 healthy,
 *                              2 unhealthy, 3 limited capacity
 *
 * Bad lines (an unknown key, a malformed value) are reported on stderr with
 * the file and line, and skipped. With NVML_DOUBLE_STRICT=1 they make the
 * configuration unusable: if the first load has any (or the file is missing),
 * nvmlInit_v2 fails with UNKNOWN, NVML's code for an unexpected init error,
 * until the file is fixed; a re-read with any keeps the previous config.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
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
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_TIMEOUT = 10,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

static const struct { const char *name; nvmlReturn_t code; } RETURN_NAMES[] = {
    {"SUCCESS", 0}, {"UNINITIALIZED", 1}, {"INVALID_ARGUMENT", 2},
    {"NOT_SUPPORTED", 3}, {"NO_PERMISSION", 4}, {"NOT_FOUND", 6}, {"INSUFFICIENT_SIZE", 7},
    {"DRIVER_NOT_LOADED", 9}, {"TIMEOUT", 10}, {"LIBRARY_NOT_FOUND", 12},
    {"GPU_IS_LOST", 15}, {"RESET_REQUIRED", 16}, {"LIB_RM_VERSION_MISMATCH", 18},
    {"INSUFFICIENT_RESOURCES", 23}, {"ARGUMENT_VERSION_MISMATCH", 25}, {"UNKNOWN", 999},
};

/* A GPU's handle has mig = -1; a MIG device's has the slot of its parent GPU. */
typedef struct nvmlDevice_st { unsigned int index; int mig; } *nvmlDevice_t;

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
#define NVML_CLOCK_COUNT 4     /* graphics, sm, mem, video */
#define NVML_THRESHOLD_COUNT 4 /* shutdown, slowdown, mem_max, gpu_max */
#define NVML_PSTATE_UNKNOWN 32
#define MAX_GPUS 64
#define MAX_FANS 8
#define MAX_NVLINKS 18
#define MAX_QUEUED_EVENTS 64
#define MAX_MIG 7
#define MAX_PROCESSES 16384
#define GPM_METRIC_MAX 210

/* nvmlEventType* */
#define EVENT_SINGLE_BIT_ECC 1ULL
#define EVENT_DOUBLE_BIT_ECC 2ULL
#define EVENT_XID 8ULL

/* nvmlValueType_t */
enum { VALUE_UINT = 1, VALUE_ULL = 3 };

/*
 * Every per-GPU number, defined once: X(name, default for GPU i). Config key
 * gpu.N.<name>. Units are NVML's: degrees C, mW, mJ, bytes, %, MHz, ns.
 */
#define GPU_NUMBERS(X)                                      \
    X(pci_bus, 0x10 + i)                                    \
    X(temperature, 40 + i)                                  \
    X(power_usage, 100000 + 1000 * i)                       \
    X(power_limit, 400000)                                  \
    X(energy, 123456789ULL + 1000ULL * i)                   \
    X(memory_total, 85899345920ULL)                         \
    X(memory_reserved, 536870912ULL)                        \
    X(memory_used, 1073741824ULL * (i + 1))                 \
    X(utilization_gpu, 50 + i)                              \
    X(utilization_memory, 20 + i)                           \
    X(encoder, 0)                                           \
    X(decoder, 5)                                           \
    X(fans, 2)                                              \
    X(pstate, 0)                                            \
    X(memory_temperature, 45 + i)                           \
    X(pcie_generation, 4)                                   \
    X(pcie_max_generation, 4)                               \
    X(pcie_width, 16)                                       \
    X(pcie_max_width, 16)                                   \
    X(pcie_replay, 0)                                       \
    X(ecc_enabled, 1)                                       \
    X(ecc_sbe_volatile, 0)                                  \
    X(ecc_dbe_volatile, 0)                                  \
    X(ecc_sbe_aggregate, 0)                                 \
    X(ecc_dbe_aggregate, 0)                                 \
    X(retired_sbe, 0)                                       \
    X(retired_dbe, 0)                                       \
    X(retired_pending, 0)                                   \
    X(remapped_cor, 0)                                      \
    X(remapped_unc, 0)                                      \
    X(remap_pending, 0)                                     \
    X(remap_failure, 0)                                     \
    X(recovery_action, 0)                                   \
    X(clock_event_reasons, 0x1 /* GPU idle */)              \
    X(supported_clock_event_reasons, 0x1ff)                 \
    X(supported_events, EVENT_XID | EVENT_SINGLE_BIT_ECC | EVENT_DOUBLE_BIT_ECC) \
    X(nvlinks, 0)                                           \
    X(mig, 0)             /* current MIG mode */            \
    X(mig_slots, 0)       /* nvmlDeviceGetMaxMigDeviceCount */ \
    X(gpm, 0)             /* GPM supported */               \
    X(gpm_mig, 0)         /* GPM per MIG instance */    \
    X(fabric_state, 0)    /* nvmlGpuFabricState_t */    \
    X(fabric_clique_id, 0)                                  \
    X(fabric_health_mask, 0)                                \
    X(fabric_health_summary, 0)

/* Per-GPU arrays: X(name, length, default for GPU i, element k). Key gpu.N.<name>.K. */
#define GPU_ARRAYS(X)                                                         \
    X(clock, NVML_CLOCK_COUNT, ((unsigned[]){1410, 1410, 1593, 1275})[k])     \
    X(max_clock, NVML_CLOCK_COUNT, ((unsigned[]){1410, 1410, 1593, 1410})[k]) \
    X(fan_speed, MAX_FANS, 30 + 5 * k + i)                                    \
    X(threshold, NVML_THRESHOLD_COUNT, ((unsigned[]){92, 89, 95, 87})[k])     \
    X(violation, 8, 0) /* power, thermal, sync boost, board limit, low util, reliability, app clocks, base clocks */ \
    X(nvlink_state, MAX_NVLINKS, 1)                                           \
    X(nvlink_crc_flit, MAX_NVLINKS, 0)                                        \
    X(nvlink_crc_data, MAX_NVLINKS, 0)                                        \
    X(nvlink_replay, MAX_NVLINKS, 0)                                          \
    X(nvlink_recovery, MAX_NVLINKS, 0)

#define GPU_STRINGS(X) X(name, 96) X(uuid, 96) X(serial, 32)

/* The NVML field ids served: X(id, config name, GPU number, value type). */
#define GPU_FIELDS(X)                                            \
    X(3, "ecc_sbe_volatile", ecc_sbe_volatile, VALUE_ULL)        \
    X(4, "ecc_dbe_volatile", ecc_dbe_volatile, VALUE_ULL)        \
    X(5, "ecc_sbe_aggregate", ecc_sbe_aggregate, VALUE_ULL)      \
    X(6, "ecc_dbe_aggregate", ecc_dbe_aggregate, VALUE_ULL)      \
    X(29, "retired_sbe", retired_sbe, VALUE_UINT)                \
    X(30, "retired_dbe", retired_dbe, VALUE_UINT)                \
    X(31, "retired_pending", retired_pending, VALUE_UINT)        \
    X(82, "memory_temperature", memory_temperature, VALUE_UINT)  \
    X(83, "energy", energy, VALUE_ULL)                           \
    X(91, "nvlinks", nvlinks, VALUE_UINT)                        \
    X(94, "pcie_replay", pcie_replay, VALUE_UINT)                \
    X(142, "remapped_cor", remapped_cor, VALUE_UINT)             \
    X(143, "remapped_unc", remapped_unc, VALUE_UINT)             \
    X(144, "remap_pending", remap_pending, VALUE_UINT)           \
    X(145, "remap_failure", remap_failure, VALUE_UINT)           \
    X(230, "recovery_action", recovery_action, VALUE_UINT)

/* Per-link NVLink fields, scopeId = link: X(id, config name, GPU array). */
#define LINK_FIELDS(X)                                   \
    X(161, "nvlink_replay", nvlink_replay)               \
    X(162, "nvlink_recovery", nvlink_recovery)           \
    X(163, "nvlink_crc_flit", nvlink_crc_flit)           \
    X(165, "nvlink_state", nvlink_state)

/* The names gpu.N.unsupported accepts: each query's (QUERY's third argument) and each field value's. */
static const char *const QUERY_NAMES[] = {
    "clock", "clock_event_reasons", "compute_processes", "decoder", "ecc_mode", "encoder",
    "events", "fabric", "fan_speed", "fans", "field_values", "gpm", "graphics_processes",
    "max_clock", "memory", "mig", "name", "nvlink_crc_data", "pci_info", "pcie",
    "power_limit", "power_usage", "process_utilization", "pstate", "serial", "temperature",
    "temperature_threshold", "utilization", "uuid", "violation",
#define NAME(id, name, ...) name,
    GPU_FIELDS(NAME) LINK_FIELDS(NAME)
#undef NAME
};

struct gpu {
#define NUMBER(name, def) unsigned long long name;
#define ARRAY(name, n, def) unsigned long long name[n];
#define STRING(name, size) char name[size];
    GPU_NUMBERS(NUMBER) GPU_ARRAYS(ARRAY) GPU_STRINGS(STRING)
#undef NUMBER
#undef ARRAY
#undef STRING
    nvmlReturn_t fail;
    char unsupported[256];
    nvmlReturn_t nvlink_fail[MAX_NVLINKS];
    nvmlReturn_t fabric_status;
    unsigned char fabric_cluster_uuid[16];
    /* MIG devices by slot; an empty slot (no uuid) answers NOT_FOUND. */
    struct mig { char uuid[96], profile[32]; unsigned int gi, ci; unsigned long long memory_total, memory_used; } migs[MAX_MIG];
    /* GPM metric values by NVML metric id; NaN: not supported. */
    double gpm_value[GPM_METRIC_MAX + 1];
};

/* A process on a GPU: compute or graphics, with its utilisation (%). */
struct process {
    unsigned int gpu, pid, graphics, gi, ci, sm, mem, enc, dec;
    unsigned long long memory;
};

/* An event waiting to be delivered by nvmlEventSetWait_v2. */
struct event { unsigned int gpu; unsigned long long type, data; };

/* Everything the config file sets (the event queue aside). */
struct config {
    unsigned int gpu_count;
    nvmlReturn_t init_error;
    char driver_version[80], nvml_version[80];
    int cuda_driver_version;
    unsigned int delay_ms;
    char call_log[512];
    char field_log[512];
    unsigned int driver_generation;
    nvmlReturn_t stale_error;
    unsigned int fabric_info_max_version;
    struct gpu gpus[MAX_GPUS];
    unsigned int process_count;
    struct process processes[MAX_PROCESSES];
};

static struct config cfg;
/* The config before a re-read, restored when strict mode rejects the new one. */
static struct config previous;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Signalled whenever the config file was (re)loaded. */
static pthread_cond_t config_loaded = PTHREAD_COND_INITIALIZER;
static struct nvmlDevice_st handles[MAX_GPUS];
static int init_count;
/* The driver generation NVML was last initialised under: after a "reload"
 * (a new driver_generation in the config) old sessions get stale_error. */
static unsigned int init_generation;
static struct stat loaded_stat;
static int loaded;
/* Strict mode found no usable config yet: nvmlInit_v2 fails. */
static int config_unusable;
static struct event queue[MAX_QUEUED_EVENTS];
static unsigned int queued;
static struct nvmlDevice_st mig_handles[MAX_GPUS][MAX_MIG];

static void defaults(void) {
    memset(&cfg, 0, sizeof cfg);
    cfg.gpu_count = 1;
    strcpy(cfg.driver_version, "550.54.15");
    strcpy(cfg.nvml_version, "12.550.54.15");
    cfg.cuda_driver_version = 12040;
    cfg.stale_error = NVML_ERROR_UNKNOWN;
    cfg.fabric_info_max_version = 3;
    for (unsigned int i = 0; i < MAX_GPUS; i++) {
        struct gpu *g = &cfg.gpus[i];
#define NUMBER(name, def) g->name = (def);
#define ARRAY(name, n, def) for (unsigned int k = 0; k < (n); k++) g->name[k] = (def);
        GPU_NUMBERS(NUMBER) GPU_ARRAYS(ARRAY)
#undef NUMBER
#undef ARRAY
        for (unsigned int k = 0; k <= GPM_METRIC_MAX; k++) g->gpm_value[k] = __builtin_nan("");
        strcpy(g->name, "NVIDIA A100-SXM4-80GB");
        snprintf(g->uuid, sizeof g->uuid, "GPU-00000000-0000-4000-8000-%012u", i);
        snprintf(g->serial, sizeof g->serial, "13240000%05u", i);
    }
}

/* The line being parsed, for messages, and the number of bad lines so far. */
static const char *parse_path, *parse_key;
static unsigned int parse_line, parse_problems;

static void __attribute__((format(printf, 1, 2))) problem(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fprintf(stderr, "nvml double: %s:%u: %s: ", parse_path, parse_line, parse_key);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    parse_problems++;
}

/* A whole number as strtoull reads it (decimal, 0x hex); anything else is a problem. */
static unsigned long long number(const char *v) {
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 0);
    if (!*v || *end || errno || *v == '-') problem("\"%s\" is not a number", v);
    return n;
}

static nvmlReturn_t return_code(const char *value) {
    for (size_t i = 0; i < sizeof RETURN_NAMES / sizeof *RETURN_NAMES; i++)
        if (strcmp(value, RETURN_NAMES[i].name) == 0) return RETURN_NAMES[i].code;
    char *end;
    long code = strtol(value, &end, 0);
    if (!*value || *end) problem("\"%s\" is neither an NVML return code name nor a number", value);
    return (nvmlReturn_t)code;
}

static void copy(char *dst, size_t size, const char *src) { snprintf(dst, size, "%s", src); }

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *end = s + strlen(s);
    while (end > s && strchr(" \t\r\n", end[-1])) *--end = 0;
    return s;
}

static void set_text(char *dst, size_t size, const char *v) {
    if (strlen(v) >= size) problem("longer than %zu characters", size - 1);
    copy(dst, size, v);
}

/* A "name=NUM" word: 1 and *out set if `word` is one. */
static int word_number(const char *word, const char *name, unsigned long long *out) {
    size_t n = strlen(name);
    if (strncmp(word, name, n) || word[n] != '=') return 0;
    *out = number(word + n + 1);
    return 1;
}

/* "9c6f5af3-53bf-49b5-a436-b66766c413c3" (dashes optional) into 16 bytes. */
static void set_uuid(unsigned char out[16], const char *v) {
    static const char hex[] = "0123456789abcdef";
    unsigned int digits = 0;
    memset(out, 0, 16);
    for (const char *p = v; *p; p++) {
        if (*p == '-') continue;
        const char *at = strchr(hex, tolower((unsigned char)*p));
        if (!at || digits == 32) {
            digits = 0;
            break;
        }
        out[digits / 2] |= (unsigned char)((at - hex) << (digits % 2 ? 0 : 4));
        digits++;
    }
    if (digits != 32) {
        memset(out, 0, 16);
        problem("\"%s\" is not a UUID (32 hex digits)", v);
    }
}

static void queue_event(unsigned int gpu, unsigned long long type, unsigned long long data) {
    if (queued < MAX_QUEUED_EVENTS) queue[queued++] = (struct event){gpu, type, data};
}

/* Queues each event of a list such as "79 48" (XIDs) or "single_bit double_bit". */
static void queue_events(unsigned int gpu, const char *key, const char *v) {
    char list[256], *save = NULL;
    copy(list, sizeof list, v);
    for (char *word = strtok_r(list, " ", &save); word; word = strtok_r(NULL, " ", &save)) {
        if (!strcmp(key, "xid")) queue_event(gpu, EVENT_XID, number(word));
        else if (!strcmp(word, "single_bit")) queue_event(gpu, EVENT_SINGLE_BIT_ECC, 0);
        else if (!strcmp(word, "double_bit")) queue_event(gpu, EVENT_DOUBLE_BIT_ECC, 0);
        else problem("unknown ECC event \"%s\"", word);
    }
}

/* " name1 name2 ": spaces around each name, so that supports() can find " name ". */
static void set_unsupported(struct gpu *g, const char *v) {
    char list[256], *save = NULL;
    copy(list, sizeof list, v);
    for (char *word = strtok_r(list, " ", &save); word; word = strtok_r(NULL, " ", &save)) {
        size_t i = 0, n = sizeof QUERY_NAMES / sizeof *QUERY_NAMES;
        while (i < n && strcmp(word, QUERY_NAMES[i])) i++;
        if (i == n) problem("unknown query or field \"%s\"", word);
    }
    if (strlen(v) + 3 > sizeof g->unsupported) problem("too long");
    snprintf(g->unsupported, sizeof g->unsupported, " %s ", v);
}

/* "MIG-UUID gi=1 ci=0 profile=1g.10gb memory_total=NUM memory_used=NUM" */
static void set_mig(struct mig *m, const char *v) {
    char list[512], *save = NULL;
    unsigned long long n;
    copy(list, sizeof list, v);
    char *word = strtok_r(list, " ", &save);
    if (!word) {
        problem("a MIG device needs a UUID");
        return;
    }
    set_text(m->uuid, sizeof m->uuid, word);
    while ((word = strtok_r(NULL, " ", &save))) {
        if (word_number(word, "gi", &n)) m->gi = (unsigned int)n;
        else if (word_number(word, "ci", &n)) m->ci = (unsigned int)n;
        else if (word_number(word, "memory_total", &n)) m->memory_total = n;
        else if (word_number(word, "memory_used", &n)) m->memory_used = n;
        else if (!strncmp(word, "profile=", 8)) set_text(m->profile, sizeof m->profile, word + 8);
        else problem("unknown MIG device attribute \"%s\"", word);
    }
}

static void set_gpu(unsigned int index, const char *key, const char *v) {
    struct gpu *g = &cfg.gpus[index];
    unsigned int k;
    int used = 0;
    char array[64];
#define NUMBER(name, def) if (!strcmp(key, #name)) { g->name = number(v); return; }
#define ARRAY(name, len, def)                                                                   \
    if (sscanf(key, "%63[a-z_].%u%n", array, &k, &used) == 2 && !key[used] && !strcmp(array, #name) && \
        k < (len)) { g->name[k] = number(v); return; }
#define STRING(name, size) if (!strcmp(key, #name)) { set_text(g->name, sizeof g->name, v); return; }
    GPU_NUMBERS(NUMBER) GPU_ARRAYS(ARRAY) GPU_STRINGS(STRING)
#undef NUMBER
#undef ARRAY
#undef STRING
    if (sscanf(key, "mig_device.%u%n", &k, &used) == 1 && !key[used] && k < MAX_MIG) {
        g->migs[k] = (struct mig){0};
        set_mig(&g->migs[k], v);
    } else if (sscanf(key, "gpm_value.%u%n", &k, &used) == 1 && !key[used] && k <= GPM_METRIC_MAX) {
        char *end;
        g->gpm_value[k] = strtod(v, &end);
        if (!*v || *end) problem("\"%s\" is not a number", v);
    } else if (sscanf(key, "nvlink_fail.%u%n", &k, &used) == 1 && !key[used] && k < MAX_NVLINKS) {
        g->nvlink_fail[k] = return_code(v);
    } else if (!strcmp(key, "fail")) g->fail = return_code(v);
    else if (!strcmp(key, "unsupported")) set_unsupported(g, v);
    else if (!strcmp(key, "xid") || !strcmp(key, "ecc_events")) queue_events(index, key, v);
    else if (!strcmp(key, "fabric_status")) g->fabric_status = return_code(v);
    else if (!strcmp(key, "fabric_cluster_uuid")) set_uuid(g->fabric_cluster_uuid, v);
    else problem("unknown key");
}

/* "gpu=0 pid=4242 type=compute memory=1073741824 gi=1 ci=0 sm=50 mem=20 enc=0 dec=0";
 * gi and ci default to 0xFFFFFFFF (not in a MIG instance). */
static void add_process(const char *v) {
    if (cfg.process_count >= MAX_PROCESSES) {
        problem("more than %d processes", MAX_PROCESSES);
        return;
    }
    struct process p = {.gi = 0xFFFFFFFF, .ci = 0xFFFFFFFF};
    unsigned int *const fields[] = {&p.gpu, &p.pid, &p.gi, &p.ci, &p.sm, &p.mem, &p.enc, &p.dec};
    const char *const names[] = {"gpu", "pid", "gi", "ci", "sm", "mem", "enc", "dec"};
    char list[512], *save = NULL;
    unsigned long long n;
    copy(list, sizeof list, v);
    for (char *word = strtok_r(list, " ", &save); word; word = strtok_r(NULL, " ", &save)) {
        size_t i = 0;
        while (i < 8 && !word_number(word, names[i], &n)) i++;
        if (i < 8) *fields[i] = (unsigned int)n;
        else if (word_number(word, "memory", &n)) p.memory = n;
        else if (!strcmp(word, "type=compute") || !strcmp(word, "type=graphics")) p.graphics = word[5] == 'g';
        else problem("unknown process attribute \"%s\"", word);
    }
    cfg.processes[cfg.process_count++] = p;
}

/* "GPU COUNT FIRST_PID": COUNT compute processes of 1 MiB and 1% SM each. */
static void add_synthetic_processes(const char *v) {
    unsigned int gpu = 0, count = 0, first = 0;
    int used = 0;
    if (sscanf(v, "%u %u %u %n", &gpu, &count, &first, &used) != 3 || v[used]) {
        problem("\"%s\" is not \"GPU COUNT FIRST_PID\"", v);
        return;
    }
    for (unsigned int i = 0; i < count && cfg.process_count < MAX_PROCESSES; i++)
        cfg.processes[cfg.process_count++] = (struct process){gpu, first + i, 0, 0xFFFFFFFF, 0xFFFFFFFF, 1, 0, 0, 0, 1048576};
}

static void set(const char *key, const char *value) {
    unsigned int index;
    int used = 0;
    unsigned long long n;
    if (sscanf(key, "gpu.%u.%n", &index, &used) == 1 && used > 0) {
        if (index < MAX_GPUS) set_gpu(index, key + used, value);
        else problem("GPU index %u out of range (at most %d)", index, MAX_GPUS - 1);
    } else if (!strcmp(key, "gpu_count")) {
        cfg.gpu_count = (unsigned int)(n = number(value));
        if (n > MAX_GPUS) {
            problem("at most %d", MAX_GPUS);
            cfg.gpu_count = MAX_GPUS;
        }
    } else if (!strcmp(key, "init_error")) cfg.init_error = return_code(value);
    else if (!strcmp(key, "driver_version")) set_text(cfg.driver_version, sizeof cfg.driver_version, value);
    else if (!strcmp(key, "nvml_version")) set_text(cfg.nvml_version, sizeof cfg.nvml_version, value);
    else if (!strcmp(key, "cuda_driver_version")) cfg.cuda_driver_version = (int)number(value);
    else if (!strcmp(key, "delay_ms")) cfg.delay_ms = (unsigned int)number(value);
    else if (!strcmp(key, "call_log")) set_text(cfg.call_log, sizeof cfg.call_log, value);
    else if (!strcmp(key, "field_log")) set_text(cfg.field_log, sizeof cfg.field_log, value);
    else if (!strcmp(key, "driver_generation")) cfg.driver_generation = (unsigned int)number(value);
    else if (!strcmp(key, "stale_error")) cfg.stale_error = return_code(value);
    else if (!strcmp(key, "fabric_info_max_version")) {
        cfg.fabric_info_max_version = (unsigned int)number(value);
        if (cfg.fabric_info_max_version != 2 && cfg.fabric_info_max_version != 3) problem("2 or 3");
    } else if (!strncmp(key, "process.", 8)) add_process(value);
    else if (!strcmp(key, "synthetic_processes")) add_synthetic_processes(value);
    else problem("unknown key");
}

static int strict(void) {
    const char *s = getenv("NVML_DOUBLE_STRICT");
    return s && *s && strcmp(s, "0");
}

/* Strict mode: a config with problems is unusable. The first one makes
 * nvmlInit_v2 fail; a re-read keeps the config that was there before. */
static void reject(const char *path, unsigned int queued_before) {
    if (!loaded || config_unusable) {
        config_unusable = 1;
        fprintf(stderr, "nvml double: NVML_DOUBLE_STRICT: %s is unusable; nvmlInit_v2 fails with UNKNOWN\n", path);
        return;
    }
    cfg = previous;
    queued = queued_before;
    fprintf(stderr, "nvml double: NVML_DOUBLE_STRICT: ignoring the changed %s; keeping the previous config\n", path);
}

/* Re-reads the config file when it changed since the last call. */
static void reload(void) {
    const char *path = getenv("NVML_DOUBLE_CONFIG");
    struct stat st;
    FILE *f = NULL;
    if (path && stat(path, &st) == 0) {
        if (loaded && st.st_ino == loaded_stat.st_ino && st.st_size == loaded_stat.st_size &&
            st.st_mtim.tv_sec == loaded_stat.st_mtim.tv_sec && st.st_mtim.tv_nsec == loaded_stat.st_mtim.tv_nsec)
            return;
        f = fopen(path, "r");
    }
    if (!f) {
        if (loaded) return;
        defaults();
        if (path) {
            fprintf(stderr, "nvml double: cannot read %s: %s\n", path, strerror(errno));
            if (strict()) reject(path, queued);
        }
        loaded = 1;
        return;
    }
    unsigned int queued_before = queued;
    if (strict()) previous = cfg;
    defaults();
    char line[512];
    parse_path = path;
    parse_line = 0;
    parse_problems = 0;
    while (fgets(line, sizeof line, f)) {
        parse_line++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *eq = strchr(line, '=');
        if (!eq) {
            parse_key = trim(line);
            if (*parse_key) problem("not a \"key = value\" line");
            continue;
        }
        *eq = 0;
        parse_key = trim(line);
        set(parse_key, trim(eq + 1));
    }
    fclose(f);
    if (parse_problems && strict()) reject(path, queued_before);
    else config_unusable = 0;
    loaded_stat = st;
    loaded = 1;
    pthread_cond_broadcast(&config_loaded);
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
    if (init_generation != cfg.driver_generation) return cfg.stale_error;
    *g = &cfg.gpus[device->index];
    if ((*g)->fail) return (*g)->fail;
    char word[64];
    snprintf(word, sizeof word, " %s ", field);
    if (strstr((*g)->unsupported, word)) return NVML_ERROR_NOT_SUPPORTED;
    return NVML_SUCCESS;
}

/* The MIG device behind a MIG handle, or NULL for any other handle. */
static struct mig *mig_of(nvmlDevice_t device) {
    struct nvmlDevice_st *first = &mig_handles[0][0], *last = &mig_handles[MAX_GPUS - 1][MAX_MIG - 1];
    if (!init_count || device < first || device > last || device->index >= cfg.gpu_count) return NULL;
    struct mig *m = &cfg.gpus[device->index].migs[device->mig];
    return m->uuid[0] ? m : NULL;
}

/* For queries that also take MIG handles: answers for the MIG device `m`. */
#define MIG_QUERY(device, out)                               \
    enter();                                                 \
    struct mig *m = mig_of(device);                          \
    if (m && !(out)) return leave(NVML_ERROR_INVALID_ARGUMENT);

#define QUERY(device, out, field)                            \
    struct gpu *g = NULL;                                    \
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
    if (init_generation != cfg.driver_generation) return leave(cfg.stale_error);
    if (cfg.gpus[index].fail) return leave(cfg.gpus[index].fail);
    handles[index] = (struct nvmlDevice_st){index, -1};
    *device = &handles[index];
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    MIG_QUERY(device, uuid);
    if (m) return leave(copy_string(uuid, length, m->uuid));
    pthread_mutex_unlock(&lock);
    QUERY(device, uuid, "uuid");
    return leave(copy_string(uuid, length, g->uuid));
}

API nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    MIG_QUERY(device, name);
    if (m) {
        char mig_name[160];
        snprintf(mig_name, sizeof mig_name, "%s MIG %s", cfg.gpus[device->index].name, m->profile);
        return leave(copy_string(name, length, mig_name));
    }
    pthread_mutex_unlock(&lock);
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
    pci->bus = (unsigned int)g->pci_bus;
    pci->pciDeviceId = 0x20b210de;
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "0000:%02X:00.0", (unsigned int)g->pci_bus);
    snprintf(pci->busId, sizeof pci->busId, "00000000:%02X:00.0", (unsigned int)g->pci_bus);
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

API nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    MIG_QUERY(device, memory);
    if (m) {
        if (memory->version != nvmlMemory_v2) return leave(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
        memory->total = m->memory_total;
        memory->reserved = 0;
        memory->used = m->memory_used;
        memory->free = m->memory_total - m->memory_used;
        return leave(NVML_SUCCESS);
    }
    pthread_mutex_unlock(&lock);
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
    *clock = (unsigned int)g->clock[type];
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t device, int type, unsigned int *clock) {
    QUERY(device, clock, "max_clock");
    if (type < 0 || type >= NVML_CLOCK_COUNT) return leave(NVML_ERROR_INVALID_ARGUMENT);
    *clock = (unsigned int)g->max_clock[type];
    return leave(NVML_SUCCESS);
}

#ifndef LEGACY_DRIVER
API nvmlReturn_t nvmlDeviceGetNumFans(nvmlDevice_t device, unsigned int *fans) {
    QUERY(device, fans, "fans");
    *fans = (unsigned int)(g->fans < MAX_FANS ? g->fans : MAX_FANS);
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetFanSpeed_v2(nvmlDevice_t device, unsigned int fan, unsigned int *speed) {
    QUERY(device, speed, "fan_speed");
    if (fan >= g->fans || fan >= MAX_FANS) return leave(NVML_ERROR_INVALID_ARGUMENT);
    *speed = (unsigned int)g->fan_speed[fan];
    return leave(NVML_SUCCESS);
}
#endif

API nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t device, int *state) {
    QUERY(device, state, "pstate");
    *state = g->pstate;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetTemperatureThreshold(nvmlDevice_t device, int type, unsigned int *temp) {
    QUERY(device, temp, "temperature_threshold");
    if (type < 0 || type >= NVML_THRESHOLD_COUNT) return leave(NVML_ERROR_NOT_SUPPORTED);
    *temp = (unsigned int)g->threshold[type];
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetCurrPcieLinkGeneration(nvmlDevice_t device, unsigned int *generation) {
    QUERY(device, generation, "pcie");
    *generation = (unsigned int)g->pcie_generation;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetMaxPcieLinkGeneration(nvmlDevice_t device, unsigned int *generation) {
    QUERY(device, generation, "pcie");
    *generation = (unsigned int)g->pcie_max_generation;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetCurrPcieLinkWidth(nvmlDevice_t device, unsigned int *width) {
    QUERY(device, width, "pcie");
    *width = (unsigned int)g->pcie_width;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetMaxPcieLinkWidth(nvmlDevice_t device, unsigned int *width) {
    QUERY(device, width, "pcie");
    *width = (unsigned int)g->pcie_max_width;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetEccMode(nvmlDevice_t device, int *current, int *pending) {
    QUERY(device, current, "ecc_mode");
    if (!pending) return leave(NVML_ERROR_INVALID_ARGUMENT);
    *current = *pending = g->ecc_enabled ? 1 : 0;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device, unsigned long long *reasons) {
    QUERY(device, reasons, "clock_event_reasons");
    *reasons = g->clock_event_reasons;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetSupportedClocksThrottleReasons(nvmlDevice_t device, unsigned long long *reasons) {
    QUERY(device, reasons, "clock_event_reasons");
    *reasons = g->supported_clock_event_reasons;
    return leave(NVML_SUCCESS);
}

/* ---- Field values (nvmlDeviceGetFieldValues), absent from the legacy driver ---- */
#ifndef LEGACY_DRIVER
typedef union {
    double dVal;
    int siVal;
    unsigned int uiVal;
    unsigned long ulVal;
    unsigned long long ullVal;
    long long sllVal;
    unsigned short usVal;
} nvmlValue_t;

typedef struct {
    unsigned int fieldId;
    unsigned int scopeId;
    long long timestamp;
    long long latencyUsec;
    int valueType;
    nvmlReturn_t nvmlReturn;
    nvmlValue_t value;
} nvmlFieldValue_t;

#define NVML_FI_DEV_PERF_POLICY_POWER 74 /* ... 81: the violation counters */
#define NVML_FI_DEV_NVLINK_CRC_DATA_L0 39 /* L0-L5: 39-44, L6-L11: 102-107 */
#define NVML_FI_DEV_NVLINK_CRC_DATA_L6 102

static int supports(const struct gpu *g, const char *name) {
    char word[64];
    snprintf(word, sizeof word, " %s ", name);
    return !strstr(g->unsupported, word);
}

/* Fills one field; returns its own return code. */
static nvmlReturn_t field_value(const struct gpu *g, nvmlFieldValue_t *v) {
    unsigned int id = v->fieldId, link = v->scopeId;
    v->valueType = VALUE_ULL;
#define FIELD(fid, name, member, type)                                       \
    if (id == fid) {                                                         \
        if (!supports(g, name)) return NVML_ERROR_NOT_SUPPORTED;             \
        v->valueType = type;                                                 \
        if (type == VALUE_UINT) v->value.uiVal = (unsigned int)g->member;    \
        else v->value.ullVal = g->member;                                    \
        return NVML_SUCCESS;                                                 \
    }
    GPU_FIELDS(FIELD)
#undef FIELD
    if (id >= NVML_FI_DEV_PERF_POLICY_POWER && id < NVML_FI_DEV_PERF_POLICY_POWER + 8) {
        if (!supports(g, "violation")) return NVML_ERROR_NOT_SUPPORTED;
        v->value.ullVal = g->violation[id - NVML_FI_DEV_PERF_POLICY_POWER];
        return NVML_SUCCESS;
    }
    int crc_data = id >= NVML_FI_DEV_NVLINK_CRC_DATA_L0 && id < NVML_FI_DEV_NVLINK_CRC_DATA_L0 + 6 ? (int)(id - NVML_FI_DEV_NVLINK_CRC_DATA_L0)
                 : id >= NVML_FI_DEV_NVLINK_CRC_DATA_L6 && id < NVML_FI_DEV_NVLINK_CRC_DATA_L6 + 6 ? (int)(id - NVML_FI_DEV_NVLINK_CRC_DATA_L6) + 6
                 : -1;
    if (crc_data >= 0) {
        if (!supports(g, "nvlink_crc_data")) return NVML_ERROR_NOT_SUPPORTED;
        if ((unsigned int)crc_data >= g->nvlinks) return NVML_ERROR_INVALID_ARGUMENT;
        if (g->nvlink_fail[crc_data]) return g->nvlink_fail[crc_data];
        v->value.ullVal = g->nvlink_crc_data[crc_data];
        return NVML_SUCCESS;
    }
#define LINK_FIELD(fid, name, member)                                        \
    if (id == fid) {                                                         \
        if (!supports(g, name)) return NVML_ERROR_NOT_SUPPORTED;             \
        if (link >= g->nvlinks || link >= MAX_NVLINKS) return NVML_ERROR_INVALID_ARGUMENT; \
        if (g->nvlink_fail[link]) return g->nvlink_fail[link];               \
        v->value.ullVal = g->member[link];                                   \
        return NVML_SUCCESS;                                                 \
    }
    LINK_FIELDS(LINK_FIELD)
#undef LINK_FIELD
    return NVML_ERROR_NOT_SUPPORTED;
}

/* One field_log line: the GPU and each field id and scope asked for. */
static void log_fields(unsigned int gpu, int count, const nvmlFieldValue_t *values) {
    if (!cfg.field_log[0]) return;
    FILE *f = fopen(cfg.field_log, "a");
    if (!f) return;
    fprintf(f, "gpu=%u", gpu);
    for (int i = 0; i < count; i++) fprintf(f, " %u:%u", values[i].fieldId, values[i].scopeId);
    fprintf(f, "\n");
    fclose(f);
}

API nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int count, nvmlFieldValue_t *values) {
    QUERY(device, values, "field_values");
    if (count <= 0) return leave(NVML_ERROR_INVALID_ARGUMENT);
    log_fields(device->index, count, values);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    for (int i = 0; i < count; i++) {
        values[i].timestamp = (long long)now.tv_sec * 1000000 + now.tv_nsec / 1000;
        values[i].latencyUsec = 0;
        values[i].nvmlReturn = field_value(g, &values[i]);
    }
    return leave(NVML_SUCCESS);
}
#endif

/* ---- GPU fabric (NVLink fabric probe), nvml.h of CUDA 13.x; absent from the legacy driver ---- */
#ifndef LEGACY_DRIVER
#define NVML_STRUCT_VERSION(data, ver) (unsigned int)(sizeof(nvml##data##_v##ver##_t) | (ver << 24U))
#define NVML_GPU_FABRIC_UUID_LEN 16

typedef unsigned char nvmlGpuFabricState_t;

typedef struct {
    unsigned int version;
    unsigned char clusterUuid[NVML_GPU_FABRIC_UUID_LEN];
    nvmlReturn_t status;
    unsigned int cliqueId;
    nvmlGpuFabricState_t state;
    unsigned int healthMask;
} nvmlGpuFabricInfo_v2_t;

typedef struct {
    unsigned int version;
    unsigned char clusterUuid[NVML_GPU_FABRIC_UUID_LEN];
    nvmlReturn_t status;
    unsigned int cliqueId;
    nvmlGpuFabricState_t state;
    unsigned int healthMask;
    unsigned char healthSummary;
} nvmlGpuFabricInfo_v3_t;

typedef nvmlGpuFabricInfo_v3_t nvmlGpuFabricInfoV_t;
#define nvmlGpuFabricInfo_v2 NVML_STRUCT_VERSION(GpuFabricInfo, 2)
#define nvmlGpuFabricInfo_v3 NVML_STRUCT_VERSION(GpuFabricInfo, 3)

/* A v2 caller's buffer is v3 without healthSummary: fill what its version has. */
API nvmlReturn_t nvmlDeviceGetGpuFabricInfoV(nvmlDevice_t device, nvmlGpuFabricInfoV_t *info) {
    QUERY(device, info, "fabric");
    unsigned int version = info->version;
    if (version != nvmlGpuFabricInfo_v2 && (version != nvmlGpuFabricInfo_v3 || cfg.fabric_info_max_version < 3))
        return leave(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    nvmlGpuFabricInfo_v2_t *common = (nvmlGpuFabricInfo_v2_t *)info;
    memcpy(common->clusterUuid, g->fabric_cluster_uuid, NVML_GPU_FABRIC_UUID_LEN);
    common->status = g->fabric_status;
    common->cliqueId = (unsigned int)g->fabric_clique_id;
    common->state = (nvmlGpuFabricState_t)g->fabric_state;
    common->healthMask = (unsigned int)g->fabric_health_mask;
    if (version == nvmlGpuFabricInfo_v3) info->healthSummary = (unsigned char)g->fabric_health_summary;
    return leave(NVML_SUCCESS);
}
#endif

/* ---- Events ---- */
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
    QUERY(device, set, "events");
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

/* ---- MIG ---- */
API nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *current, unsigned int *pending) {
    QUERY(device, current, "mig");
    if (!pending) return leave(NVML_ERROR_INVALID_ARGUMENT);
    *current = *pending = g->mig ? 1 : 0;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count) {
    QUERY(device, count, "mig");
    *count = (unsigned int)(g->mig_slots < MAX_MIG ? g->mig_slots : MAX_MIG);
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index, nvmlDevice_t *mig) {
    QUERY(device, mig, "mig");
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

/* ---- Processes ---- */
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
