/* The GPU fabric probe (NVLink fabric of NVSwitch systems), nvml.h of CUDA
 * 13.x; absent from the legacy driver. */
#include "nvml_double.h"

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

#ifndef LEGACY_DRIVER
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
