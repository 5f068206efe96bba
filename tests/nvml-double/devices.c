/* The per-GPU queries: identity, sensors, memory, utilisation, clocks, fans,
 * PCIe, ECC mode and clock event reasons. */
#include "nvml_double.h"

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
    pci->domain = (unsigned int)g->pci_domain;
    pci->bus = (unsigned int)g->pci_bus;
    pci->device = (unsigned int)g->pci_device;
    pci->pciDeviceId = (unsigned int)g->pci_device_id;
    pci->pciSubSystemId = (unsigned int)g->pci_subsystem_id;
    /* As NVML formats them: the legacy id's domain in 4 digits, the other's in 8. */
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.0", pci->domain & 0xFFFF, pci->bus & 0xFF,
             pci->device & 0xFF);
    snprintf(pci->busId, sizeof pci->busId, "%08X:%02X:%02X.0", pci->domain, pci->bus & 0xFF, pci->device & 0xFF);
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
    QUERY_AT(device, clock, "clock", type);
    if (type < 0 || type >= NVML_CLOCK_COUNT) return leave(NVML_ERROR_INVALID_ARGUMENT);
    *clock = (unsigned int)g->clock[type];
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t device, int type, unsigned int *clock) {
    QUERY_AT(device, clock, "max_clock", type);
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
    QUERY_AT(device, speed, "fan_speed", (int)fan);
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
    QUERY_AT(device, temp, "temperature_threshold", type);
    if (type < 0 || type >= NVML_THRESHOLD_COUNT) return leave(NVML_ERROR_NOT_SUPPORTED);
    *temp = (unsigned int)g->threshold[type];
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetCurrPcieLinkGeneration(nvmlDevice_t device, unsigned int *generation) {
    QUERY(device, generation, "pcie pcie_generation");
    *generation = (unsigned int)g->pcie_generation;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetMaxPcieLinkGeneration(nvmlDevice_t device, unsigned int *generation) {
    QUERY(device, generation, "pcie pcie_max_generation");
    *generation = (unsigned int)g->pcie_max_generation;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetCurrPcieLinkWidth(nvmlDevice_t device, unsigned int *width) {
    QUERY(device, width, "pcie pcie_width");
    *width = (unsigned int)g->pcie_width;
    return leave(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetMaxPcieLinkWidth(nvmlDevice_t device, unsigned int *width) {
    QUERY(device, width, "pcie pcie_max_width");
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
    QUERY(device, reasons, "clock_event_reasons supported_clock_event_reasons");
    *reasons = g->supported_clock_event_reasons;
    return leave(NVML_SUCCESS);
}
