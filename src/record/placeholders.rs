//! Stable placeholders for what identifies a machine: a profile is meant to
//! be attached to a public bug report. Each placeholder depends only on the
//! GPU's index (and MIG slot), so recording the same machine twice gives the
//! same profile, and the exporter's labels on a replay can be mapped back.

use crate::units::uuid_text;

/// Replaces identifiers by placeholders, unless told to keep them.
#[derive(Debug)]
pub(super) struct Placeholders {
    keep: bool,
    /// Fabric cluster UUIDs in the order first seen: GPUs of one cluster
    /// share one, and their placeholders must too.
    clusters: Vec<[u8; 16]>,
}

/// The PCI location a placeholder bus id stands for: domain, bus, device.
pub(super) type PciLocation = (u32, u32, u32);

impl Placeholders {
    pub(super) fn new(keep: bool) -> Self {
        Self {
            keep,
            clusters: Vec::new(),
        }
    }

    /// Whether identifiers are replaced.
    pub(super) fn replacing(&self) -> bool {
        !self.keep
    }

    /// The GPU's UUID: `GPU-00000000-0000-4000-8000-<index, 12 digits>`.
    pub(super) fn gpu_uuid(&self, gpu: u32, real: &str) -> String {
        self.pick(real, || format!("GPU-00000000-0000-4000-8000-{gpu:012}"))
    }

    /// A MIG device's UUID: `MIG-00000000-0000-5000-8000-<GPU, 6 digits><slot, 6 digits>`.
    pub(super) fn mig_uuid(&self, gpu: u32, slot: u32, real: &str) -> String {
        self.pick(real, || {
            format!("MIG-00000000-0000-5000-8000-{gpu:06}{slot:06}")
        })
    }

    /// The board serial number: the GPU index in 13 digits.
    pub(super) fn serial(&self, gpu: u32, real: &str) -> String {
        self.pick(real, || format!("{gpu:013}"))
    }

    /// The PCI location: domain 0, bus 0x10 + index, device 0.
    pub(super) fn pci(&self, gpu: u32, real: PciLocation) -> PciLocation {
        if self.keep { real } else { (0, 0x10 + gpu, 0) }
    }

    /// The fabric cluster UUID. All zeroes (no cluster) says nothing and
    /// stays; others become `00000000-0000-4000-8000-<n, 12 digits>`, n
    /// counting distinct clusters from 1.
    pub(super) fn cluster_uuid(&mut self, real: [u8; 16]) -> String {
        if self.keep || real == [0; 16] {
            return uuid_text(&real);
        }
        let n = match self.clusters.iter().position(|c| *c == real) {
            Some(i) => i + 1,
            None => {
                self.clusters.push(real);
                self.clusters.len()
            }
        };
        format!("00000000-0000-4000-8000-{n:012}")
    }

    fn pick(&self, real: &str, placeholder: impl FnOnce() -> String) -> String {
        if self.keep {
            real.to_owned()
        } else {
            placeholder()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_stable_and_identifiers_kept_when_asked() {
        let mut replace = Placeholders::new(false);
        let real = "GPU-f7b02328-d6fe-5b1f-9683-15041689bb03";
        assert_eq!(
            replace.gpu_uuid(3, real),
            "GPU-00000000-0000-4000-8000-000000000003"
        );
        assert_eq!(
            replace.mig_uuid(3, 2, "MIG-x"),
            "MIG-00000000-0000-5000-8000-000003000002"
        );
        assert_eq!(replace.serial(1, "1650124008279"), "0000000000001");
        assert_eq!(replace.pci(2, (1, 0xdb, 4)), (0, 0x12, 0));
        let a = [0x9c; 16];
        let b = [0x11; 16];
        assert_eq!(
            replace.cluster_uuid(a),
            "00000000-0000-4000-8000-000000000001"
        );
        assert_eq!(
            replace.cluster_uuid(b),
            "00000000-0000-4000-8000-000000000002"
        );
        assert_eq!(
            replace.cluster_uuid(a),
            "00000000-0000-4000-8000-000000000001"
        );
        assert_eq!(
            replace.cluster_uuid([0; 16]),
            "00000000-0000-0000-0000-000000000000"
        );

        let mut keep = Placeholders::new(true);
        assert_eq!(keep.gpu_uuid(3, real), real);
        assert_eq!(keep.serial(1, "1650124008279"), "1650124008279");
        assert_eq!(keep.pci(2, (1, 0xdb, 4)), (1, 0xdb, 4));
        let mut uuid = [0u8; 16];
        uuid[0] = 0x9c;
        uuid[15] = 0xc3;
        assert_eq!(
            keep.cluster_uuid(uuid),
            "9c000000-0000-0000-0000-0000000000c3"
        );
    }
}
