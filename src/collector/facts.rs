//! Typed facts a collection carries beside its samples, for the parts that
//! join on them (the dcgm view labels GPU readings with the GPU's identity,
//! its MIG devices and the pods that hold them) instead of reading them back
//! out of label values; and the Slurm jobs that use a GPU or GPU instance.

/// The driver, GPUs and MIG devices one GPU collection saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct GpuInventory {
    pub(crate) driver_version: String,
    /// Every GPU whose identity is known, lost ones too.
    pub(crate) gpus: Vec<GpuIdentity>,
    pub(crate) mig_devices: Vec<MigDevice>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct GpuIdentity {
    pub(crate) index: u32,
    pub(crate) uuid: String,
    pub(crate) name: String,
    pub(crate) pci_bus_id: String,
}

/// A MIG device of a GPU in MIG mode.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MigDevice {
    /// The UUID of the GPU it is part of.
    pub(crate) gpu_uuid: String,
    pub(crate) uuid: String,
    pub(crate) gpu_instance: u32,
    pub(crate) compute_instance: u32,
    /// E.g. `1g.10gb`; empty when the name did not say.
    pub(crate) profile: String,
}

/// A GPU or MIG device the kubelet allocated to a container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct GpuAllocation {
    /// GPU or MIG device UUID; empty for a DRA device not resolved (yet).
    pub(crate) uuid: String,
    pub(crate) namespace: String,
    pub(crate) pod: String,
    pub(crate) container: String,
    /// The claim it came through, for a device allocated through Dynamic
    /// Resource Allocation; `None` for a device plugin's.
    pub(crate) claim: Option<ClaimDevice>,
}

/// A device of a ResourceClaim, as the kubelet and the DRA driver name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ClaimDevice {
    pub(crate) claim: String,
    pub(crate) claim_namespace: String,
    pub(crate) driver: String,
    pub(crate) pool: String,
    /// The driver's name of the device, e.g. `gpu-0`.
    pub(crate) device: String,
    /// For a MIG device: its GPU and profile, from the driver's ResourceSlice.
    pub(crate) mig: Option<MigOf>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct MigOf {
    pub(crate) parent_uuid: String,
    pub(crate) profile: String,
}

/// A Slurm job that uses a GPU or one of its MIG GPU instances, from the
/// job mapping files a prolog writes (collector `hpc`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct JobAssignment {
    /// The GPU's UUID (for a GPU instance, its GPU's).
    pub(crate) uuid: String,
    /// The MIG GPU instance id; empty for the whole GPU.
    pub(crate) gpu_instance: String,
    /// The job id as the file has it, e.g. `1234`, `1234_7`, `1234+0`.
    pub(crate) job: String,
}
