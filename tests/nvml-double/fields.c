/* nvmlDeviceGetFieldValues: many readings of a GPU in one call, each with
 * its own return code; absent from the legacy driver. */
#include "nvml_double.h"

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

#ifndef LEGACY_DRIVER
#define NVML_FI_DEV_PERF_POLICY_POWER 74 /* ... 81: the violation counters */
#define NVML_FI_DEV_NVLINK_CRC_DATA_L0 39 /* L0-L5: 39-44, L6-L11: 102-107 */
#define NVML_FI_DEV_NVLINK_CRC_DATA_L6 102

/* Fills one field; returns its own return code. */
static nvmlReturn_t field_value(const struct gpu *g, nvmlFieldValue_t *v) {
    unsigned int id = v->fieldId, link = v->scopeId;
    v->valueType = VALUE_ULL;
#define FIELD(fid, name, member, type)                                       \
    if (id == fid) {                                                         \
        nvmlReturn_t rc = query_rc(g, name, -1);                             \
        if (rc) return rc;                                                   \
        v->valueType = type;                                                 \
        if (type == VALUE_UINT) v->value.uiVal = (unsigned int)g->member;    \
        else v->value.ullVal = g->member;                                    \
        return NVML_SUCCESS;                                                 \
    }
    GPU_FIELDS(FIELD)
#undef FIELD
    if (id >= NVML_FI_DEV_PERF_POLICY_POWER && id < NVML_FI_DEV_PERF_POLICY_POWER + 8) {
        nvmlReturn_t rc = query_rc(g, "violation", (int)(id - NVML_FI_DEV_PERF_POLICY_POWER));
        if (rc) return rc;
        v->value.ullVal = g->violation[id - NVML_FI_DEV_PERF_POLICY_POWER];
        return NVML_SUCCESS;
    }
    int crc_data = id >= NVML_FI_DEV_NVLINK_CRC_DATA_L0 && id < NVML_FI_DEV_NVLINK_CRC_DATA_L0 + 6 ? (int)(id - NVML_FI_DEV_NVLINK_CRC_DATA_L0)
                 : id >= NVML_FI_DEV_NVLINK_CRC_DATA_L6 && id < NVML_FI_DEV_NVLINK_CRC_DATA_L6 + 6 ? (int)(id - NVML_FI_DEV_NVLINK_CRC_DATA_L6) + 6
                 : -1;
    if (crc_data >= 0) {
        nvmlReturn_t rc = query_rc(g, "nvlink_crc_data", crc_data);
        if (rc) return rc;
        if ((unsigned int)crc_data >= g->nvlinks) return NVML_ERROR_INVALID_ARGUMENT;
        if (g->nvlink_fail[crc_data]) return g->nvlink_fail[crc_data];
        v->value.ullVal = g->nvlink_crc_data[crc_data];
        return NVML_SUCCESS;
    }
#define LINK_FIELD(fid, name, member)                                        \
    if (id == fid) {                                                         \
        nvmlReturn_t rc = query_rc(g, name, (int)link);                      \
        if (rc) return rc;                                                   \
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

