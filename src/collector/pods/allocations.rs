//! Which containers hold NVIDIA devices, from a pod-resources reply: the
//! device plugin's devices by UUID, and DRA claims' devices by the driver's
//! names, which [`super::dra`] resolves to UUIDs.

use super::proto;
use crate::collector::facts::{ClaimDevice, GpuAllocation};

/// The NVIDIA devices of every container: whole GPUs (`nvidia.com/gpu`) and
/// MIG devices (`nvidia.com/mig-*`) of the device plugin, by UUID
/// (time-slicing replicas, `GPU-...::3`, name the same GPU and count once
/// per container); and the devices of DRA claims whose driver is one of
/// `drivers`, with an empty UUID until resolved.
pub(super) fn gpu_allocations(
    reply: &proto::ListPodResourcesResponse,
    drivers: &[String],
) -> Vec<GpuAllocation> {
    let mut allocations = Vec::new();
    for pod in &reply.pod_resources {
        for container in &pod.containers {
            let allocation = |uuid: &str, claim| GpuAllocation {
                uuid: uuid.to_owned(),
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                container: container.name.clone(),
                claim,
            };
            for devices in &container.devices {
                let name = devices.resource_name.as_str();
                if name != "nvidia.com/gpu" && !name.starts_with("nvidia.com/mig-") {
                    continue;
                }
                for id in &devices.device_ids {
                    let uuid = id.split_once("::").map_or(id.as_str(), |(uuid, _)| uuid);
                    allocations.push(allocation(uuid, None));
                }
            }
            for claim in &container.dynamic_resources {
                for resource in &claim.claim_resources {
                    if !drivers.contains(&resource.driver_name) || resource.device_name.is_empty() {
                        continue;
                    }
                    let device = ClaimDevice {
                        claim: claim.claim_name.clone(),
                        claim_namespace: claim.claim_namespace.clone(),
                        driver: resource.driver_name.clone(),
                        pool: resource.pool_name.clone(),
                        device: resource.device_name.clone(),
                        mig: None,
                    };
                    allocations.push(allocation("", Some(device)));
                }
            }
        }
    }
    allocations.sort();
    allocations.dedup();
    allocations
}

#[cfg(test)]
mod tests {
    use super::proto::*;
    use super::*;

    fn devices(resource: &str, ids: &[&str]) -> ContainerDevices {
        ContainerDevices {
            resource_name: resource.into(),
            device_ids: ids.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn claim(name: &str, resources: &[(&str, &str)]) -> DynamicResource {
        DynamicResource {
            claim_name: name.into(),
            claim_namespace: "ml".into(),
            claim_resources: resources
                .iter()
                .map(|(driver, device)| ClaimResource {
                    cdi_devices: Vec::new(),
                    driver_name: (*driver).into(),
                    pool_name: "node-a".into(),
                    device_name: (*device).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn maps_gpus_mig_devices_and_claims_to_containers() {
        let reply = ListPodResourcesResponse {
            pod_resources: vec![PodResources {
                name: "train-0".into(),
                namespace: "ml".into(),
                containers: vec![ContainerResources {
                    name: "worker".into(),
                    devices: vec![
                        devices("nvidia.com/gpu", &["GPU-a::0", "GPU-a::1", "GPU-b"]),
                        devices("nvidia.com/mig-1g.10gb", &["MIG-c"]),
                        devices("example.com/fpga", &["fpga-0"]),
                    ],
                    dynamic_resources: vec![
                        claim(
                            "two",
                            &[("gpu.nvidia.com", "gpu-1"), ("gpu.nvidia.com", "gpu-2")],
                        ),
                        claim("other", &[("example.com", "fpga-1")]),
                    ],
                }],
            }],
        };
        let allocations = gpu_allocations(&reply, &["gpu.nvidia.com".to_owned()]);
        let uuids: Vec<_> = allocations.iter().map(|a| a.uuid.as_str()).collect();
        assert_eq!(uuids, ["", "", "GPU-a", "GPU-b", "MIG-c"]);
        let claimed: Vec<_> = allocations
            .iter()
            .filter_map(|a| a.claim.as_ref())
            .map(|c| (c.claim.as_str(), c.device.as_str()))
            .collect();
        assert_eq!(claimed, [("two", "gpu-1"), ("two", "gpu-2")]);
    }
}
