//! The labels of the dcgm view's series, in dcgm-exporter's order, from the
//! typed facts of the collections: the GPU's identity and MIG devices from
//! the GPU collection, the pods that hold a GPU from the pods collection,
//! the Slurm jobs that use it from the hpc collection.

use std::collections::HashMap;

use super::fields::DRIVER_VERSION_LABEL;
use crate::collector::facts::{ClaimDevice, GpuAllocation, GpuInventory, JobAssignment};

/// Label names and values, in order.
pub(super) type Labels = Vec<(&'static str, String)>;

/// What labels a series: the GPU's identity, the host, the driver, the MIG
/// instance and the pod that holds the GPU or instance.
pub(super) struct Labeller<'a> {
    hostname: &'a str,
    /// None when the counters file has no `DCGM_FI_DRIVER_VERSION` label row.
    driver_version: Option<&'a str>,
    /// By GPU UUID: PCI bus ID and model name.
    gpus: HashMap<&'a str, (&'a str, &'a str)>,
    /// By GPU UUID, then GPU instance: the MIG profile.
    profiles: ByInstance<'a, &'a str>,
    /// By GPU UUID, then GPU instance (empty for a whole GPU): the first
    /// allocation in (namespace, pod, container) order. dcgm-exporter, by
    /// default, also labels a series with one pod, not one series per pod.
    pods: ByInstance<'a, &'a GpuAllocation>,
    /// By GPU UUID, then GPU instance: the Slurm jobs, each of which gets a
    /// copy of the series (dcgm-exporter's `hpc_job`).
    jobs: ByInstance<'a, Vec<&'a str>>,
}

/// Values by GPU UUID, then GPU instance id (empty for the whole GPU).
type ByInstance<'a, T> = HashMap<&'a str, HashMap<String, T>>;

fn at<'m, T>(map: &'m ByInstance<T>, uuid: &str, gpu_instance: &str) -> Option<&'m T> {
    map.get(uuid)?.get(gpu_instance)
}

impl<'a> Labeller<'a> {
    pub(super) fn new(
        inventory: &'a GpuInventory,
        hostname: &'a str,
        driver_version: bool,
        allocations: &'a [GpuAllocation],
    ) -> Self {
        let gpus = inventory
            .gpus
            .iter()
            .map(|gpu| {
                (
                    gpu.uuid.as_str(),
                    (gpu.pci_bus_id.as_str(), gpu.name.as_str()),
                )
            })
            .collect();
        let mut profiles: ByInstance<&str> = HashMap::new();
        // MIG device UUID → its GPU and GPU instance.
        let mut mig_devices = HashMap::new();
        for device in &inventory.mig_devices {
            let instance = device.gpu_instance.to_string();
            profiles
                .entry(device.gpu_uuid.as_str())
                .or_default()
                .entry(instance.clone())
                .or_insert(device.profile.as_str());
            mig_devices.insert(device.uuid.as_str(), (device.gpu_uuid.as_str(), instance));
        }
        let mut sorted: Vec<&GpuAllocation> = allocations.iter().collect();
        sorted.sort_by(|a, b| {
            (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container))
        });
        let mut pods: ByInstance<&GpuAllocation> = HashMap::new();
        for allocation in sorted.into_iter().filter(|a| !a.uuid.is_empty()) {
            // A MIG device of a DRA claim labels its GPU's series, as
            // dcgm-exporter does (with dra_mig_device_uuid); a device
            // plugin's, the series of its GPU instance.
            let dra_mig = allocation.claim.as_ref().and_then(|c| c.mig.as_ref());
            let (gpu, instance) = match dra_mig {
                Some(mig) => (mig.parent_uuid.as_str(), String::new()),
                None => mig_devices
                    .get(allocation.uuid.as_str())
                    .cloned()
                    .unwrap_or((allocation.uuid.as_str(), String::new())),
            };
            pods.entry(gpu)
                .or_default()
                .entry(instance)
                .or_insert(allocation);
        }
        Self {
            hostname,
            driver_version: driver_version.then_some(inventory.driver_version.as_str()),
            gpus,
            profiles,
            pods,
            jobs: HashMap::new(),
        }
    }

    /// Labels the series of each GPU or GPU instance in `jobs` once per job.
    pub(super) fn with_jobs(mut self, jobs: &'a [JobAssignment]) -> Self {
        for job in jobs {
            self.jobs
                .entry(job.uuid.as_str())
                .or_default()
                .entry(job.gpu_instance.clone())
                .or_default()
                .push(job.job.as_str());
        }
        self
    }

    /// The Slurm jobs of a GPU (`gpu_instance` empty) or GPU instance, in
    /// the order of its mapping file; none for most.
    pub(super) fn jobs(&self, uuid: &str, gpu_instance: &str) -> &[&'a str] {
        at(&self.jobs, uuid, gpu_instance).map_or(&[], Vec::as_slice)
    }

    /// Labels in dcgm-exporter's order: identity, MIG instance, host, driver,
    /// then `extra` and the pod's, by name.
    pub(super) fn of(&self, gpu: &str, uuid: &str, gpu_instance: &str, extra: Labels) -> Labels {
        let (pci_bus_id, model) = self.gpus.get(uuid).copied().unwrap_or_default();
        let mut labels = vec![
            ("gpu", gpu.to_owned()),
            ("UUID", uuid.to_owned()),
            ("pci_bus_id", pci_bus_id.to_owned()),
            ("device", format!("nvidia{gpu}")),
            ("modelName", model.to_owned()),
        ];
        if !gpu_instance.is_empty() {
            let profile = at(&self.profiles, uuid, gpu_instance).copied();
            let profile = profile.unwrap_or("");
            labels.push(("GPU_I_PROFILE", profile.to_owned()));
            labels.push(("GPU_I_ID", gpu_instance.to_owned()));
        }
        if !self.hostname.is_empty() {
            labels.push(("Hostname", self.hostname.to_owned()));
        }
        if let Some(version) = self.driver_version {
            labels.push((DRIVER_VERSION_LABEL, version.to_owned()));
        }
        let mut others = extra;
        if let Some(allocation) = at(&self.pods, uuid, gpu_instance) {
            others.push(("container", allocation.container.clone()));
            others.push(("namespace", allocation.namespace.clone()));
            others.push(("pod", allocation.pod.clone()));
            if let Some(claim) = &allocation.claim {
                others.extend(dra_labels(claim, &allocation.uuid));
            }
        }
        others.sort();
        labels.extend(others);
        labels
    }
}

/// dcgm-exporter's labels of a device allocated through a DRA claim.
fn dra_labels(claim: &ClaimDevice, uuid: &str) -> Labels {
    let mut labels = vec![
        ("dra_claim_name", claim.claim.clone()),
        ("dra_claim_namespace", claim.claim_namespace.clone()),
        ("dra_driver_name", claim.driver.clone()),
        ("dra_pool_name", claim.pool.clone()),
        ("dra_device_name", claim.device.clone()),
    ];
    if let Some(mig) = &claim.mig {
        labels.push(("dra_mig_profile", mig.profile.clone()));
        labels.push(("dra_mig_device_uuid", uuid.to_owned()));
    }
    labels
}
