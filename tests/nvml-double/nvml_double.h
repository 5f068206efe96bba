/*
 * NVML test double: a libnvidia-ml.so.1 for machines without a GPU.
 *
 * It exports the NVML entry points the exporter uses, with NVML's own
 * signatures, struct layouts and return codes (see nvml.h), and nothing else:
 * an entry point that is not implemented here is absent, as with an older
 * driver. Built with -DLEGACY_DRIVER it also lacks the symbols a pre-R450
 * driver lacks (field values, per-fan speed, GPU fabric info).
 *
 * Every *.c file of this directory is compiled into the one library:
 *   config.c     the config file: defaults, parsing, strict mode, re-reading
 *   nvml_double.c   init and shutdown, system queries, device handles, the
 *                checks every device query makes
 *   devices.c    the per-GPU queries (identity, sensors, clocks, PCIe, ECC)
 *   fields.c     nvmlDeviceGetFieldValues
 *   events.c     event sets
 *   mig_gpm.c    MIG devices and GPM samples
 *   processes.c  running processes and their utilisation
 *   fabric.c     the GPU fabric probe
 *
 * Values come from the file named by NVML_DOUBLE_CONFIG, re-read whenever it
 * changes, so a test can change readings or inject faults while the exporter
 * runs. A profile that `system-info-exporter record-nvml` recorded on a real
 * GPU is such a file. One "key = value" per line, '#' starts a comment. NUM
 * is decimal or 0x hex; CODE is an NVML return code by name without
 * NVML_ERROR_ (GPU_IS_LOST, NOT_SUPPORTED, NO_PERMISSION, UNKNOWN, ...; every
 * name of nvml.h) or by number. Every key:
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
 *     pci_domain, pci_bus, pci_device (the bus id DOMAIN:BUS:DEVICE.0),
 *     pci_device_id, pci_subsystem_id; temperature, memory_temperature;
 *     power_usage, power_limit; energy (total consumption); memory_total,
 *     memory_reserved, memory_used; utilization_gpu, utilization_memory,
 *     encoder, decoder; fans (count); pstate (0-15, 32 unknown);
 *     pcie_generation, pcie_max_generation, pcie_width, pcie_max_width,
 *     pcie_replay (count); ecc_enabled (0/1); ecc_sbe_volatile,
 *     ecc_dbe_volatile, ecc_sbe_aggregate, ecc_dbe_aggregate; retired_sbe,
 *     retired_dbe, retired_pending (pages); remapped_cor, remapped_unc,
 *     remap_pending, remap_failure (rows); recovery_action
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
 *   gpu.N.unsupported = power_usage fan_speed clock.3
 *                              these return NOT_SUPPORTED: query names (see
 *                              QUERY_NAMES in config.c) and field value names
 *                              (GPU_FIELDS, LINK_FIELDS, violation,
 *                              nvlink_crc_data); QUERY.K only element K of a
 *                              query that takes one (a clock domain, threshold,
 *                              fan, MIG slot, violation or NVLink link). Several
 *                              lines add up.
 *   gpu.N.error.QUERY = CODE, gpu.N.error.QUERY.K = CODE
 *                              the same for any other return code, e.g.
 *                              error.power_usage = NO_PERMISSION
 *   gpu.N.xid = 79 48          queues these XID events, and
 *   gpu.N.ecc_events = single_bit double_bit   these ECC events, once each
 *                              time the file is (re)loaded
 *   gpu.N.mig_device.K = MIG-UUID gi=1 ci=0 profile=1g.10gb memory_total=NUM memory_used=NUM
 *                              MIG device slot K < mig_slots (empty: NOT_FOUND);
 *                              its name is "<GPU name> MIG <profile>"
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
#ifndef NVML_DOUBLE_H
#define NVML_DOUBLE_H

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
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_TIMEOUT = 10,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

/* A GPU's handle has mig = -1; a MIG device's has the slot of its parent GPU. */
typedef struct nvmlDevice_st { unsigned int index; int mig; } *nvmlDevice_t;

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
#define MAX_QUERY_ERRORS 192
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
    X(pci_domain, 0)                                        \
    X(pci_bus, 0x10 + i)                                    \
    X(pci_device, 0)                                        \
    X(pci_device_id, 0x20b210de /* A100 SXM4 80GB */)       \
    X(pci_subsystem_id, 0)                                  \
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

/* A return code configured for a query (an `unsupported` word or an `error.` key). */
struct query_error {
    const char *name; /* one of QUERY_NAMES */
    int index; /* the element it applies to; -1: every call */
    nvmlReturn_t rc;
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
    struct query_error errors[MAX_QUERY_ERRORS];
    unsigned int error_count;
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

/* ---- config.c ---- */
extern struct config cfg;
/* Signalled whenever the config file was (re)loaded. */
extern pthread_cond_t config_loaded;
/* Strict mode found no usable config yet: nvmlInit_v2 fails. */
extern int config_unusable;
extern struct event queue[MAX_QUEUED_EVENTS];
extern unsigned int queued;
/* Re-reads the config file when it changed since the last call (under `lock`). */
void reload(void);
/* NVML's name of a return code, or NULL. */
const char *return_name(nvmlReturn_t rc);
/* The code configured for query `names` (a space-separated list of names,
 * any of which counts) at element `index` (-1: a query without one): an
 * error.NAME[.K] key or an unsupported word; SUCCESS when none names it. */
nvmlReturn_t query_rc(const struct gpu *g, const char *names, int index);

/* ---- nvml_double.c ---- */
extern pthread_mutex_t lock;
extern struct nvmlDevice_st handles[MAX_GPUS];
extern struct nvmlDevice_st mig_handles[MAX_GPUS][MAX_MIG];
extern int init_count;
/* The driver generation NVML was last initialised under. */
extern unsigned int init_generation;
/* Sleeps for delay_ms (outside the lock), then takes the lock with a fresh config. */
void enter(void);
nvmlReturn_t leave(nvmlReturn_t rc);
/* Common checks of a device query of element `index` of `names` (see
 * query_rc); on success *g is the GPU. */
nvmlReturn_t device_query(nvmlDevice_t device, const void *out, const char *names, int index, struct gpu **g);
/* The MIG device behind a MIG handle, or NULL for any other handle. */
struct mig *mig_of(nvmlDevice_t device);
nvmlReturn_t copy_string(char *dst, unsigned int length, const char *src);

/* A device query: takes the lock, checks the handle, sets `g` and `rc`. */
#define QUERY_AT(device, out, names, index)                          \
    struct gpu *g = NULL;                                            \
    enter();                                                         \
    nvmlReturn_t rc = device_query(device, out, names, index, &g);   \
    if (rc != NVML_SUCCESS) return leave(rc);

#define QUERY(device, out, names) QUERY_AT(device, out, names, -1)

/* For queries that also take MIG handles: answers for the MIG device `m`. */
#define MIG_QUERY(device, out)                               \
    enter();                                                 \
    struct mig *m = mig_of(device);                          \
    if (m && !(out)) return leave(NVML_ERROR_INVALID_ARGUMENT);

#endif
