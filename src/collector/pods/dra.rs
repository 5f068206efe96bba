//! Devices of DRA claims to GPU and MIG UUIDs. The kubelet names a claim's
//! device by its driver, pool and device name (`gpu.nvidia.com`, the node,
//! `gpu-0`); the UUID is an attribute of that device in the node's
//! ResourceSlice. Slices are asked for only when the kubelet reports a
//! device not resolved yet, or one whose UUID NVML no longer reports (a MIG
//! reconfiguration can reuse a name): at most once per 30 s, backing off to
//! once per 5 minutes while a device stays unresolved or the API fails.
//! Never per scrape, and never a watch.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::kube_api::{ApiFailure, Client, SliceDevice};
use crate::collector::Failures;
use crate::collector::facts::{GpuAllocation, MigOf};
use crate::collector::status::DraStatus;
use crate::metrics::catalogue::KUBERNETES_API_ERRORS;
use crate::metrics::exposition::Samples;
use crate::metrics::labels::KubeApiError;

/// The least time between two lookups.
const MIN_INTERVAL: Duration = Duration::from_secs(30);
/// The most time between lookups while devices stay unresolved.
const MAX_INTERVAL: Duration = Duration::from_secs(300);

/// How DRA devices are resolved: plain values, whatever set them.
#[derive(Debug, Clone)]
pub(crate) struct DraConfig {
    /// Off with `--collector.pods.dra=false`.
    pub(crate) enabled: bool,
    /// The drivers whose devices count, e.g. `gpu.nvidia.com`.
    pub(crate) drivers: Vec<String>,
    /// The Kubernetes API: `--kubernetes.api-url`, else the in-cluster
    /// address; `None` outside a cluster.
    pub(crate) api_url: Option<String>,
    /// Whether `api_url` was named by the user (then a missing token is an
    /// error to report, not "no token mounted").
    pub(crate) api_url_given: bool,
    pub(crate) token_file: PathBuf,
    pub(crate) ca_file: PathBuf,
    /// This node, whose ResourceSlices are read.
    pub(crate) node_name: Option<String>,
}

/// A device of a driver's pool, as the kubelet names it.
type DeviceKey = (String, String, String);

/// What a ResourceSlice says of a device.
#[derive(Debug, Clone)]
struct Known {
    uuid: String,
    mig: Option<MigOf>,
}

pub(super) struct Resolver {
    config: DraConfig,
    client: Option<Client>,
    /// Why there is no client, when there is none.
    missing: Option<&'static str>,
    known: HashMap<DeviceKey, Known>,
    /// The devices unresolved at the last lookup, its time, and the wait
    /// before the next one for the same devices.
    pending: BTreeSet<DeviceKey>,
    last_lookup: Option<Instant>,
    wait: Duration,
    errors: [u64; KubeApiError::COUNT],
    failures: Failures,
    /// Whether the line saying how to turn resolution on was logged.
    told: bool,
}

impl Resolver {
    /// The error says what is wrong with an explicit configuration (an
    /// unreadable CA file, a bad URL).
    pub(super) fn new(config: DraConfig, timeout: Duration) -> Result<Self, String> {
        let mut missing = None;
        let client = match (&config.api_url, &config.node_name) {
            _ if !config.enabled => None,
            (None, _) => {
                missing = Some("no_token");
                None
            }
            (Some(_), None) => {
                missing = Some("no_node_name");
                None
            }
            (Some(_), Some(_)) if !config.api_url_given && !config.token_file.exists() => {
                missing = Some("no_token");
                None
            }
            (Some(url), Some(_)) => Some(Client::new(
                url,
                &config.token_file,
                &config.ca_file,
                timeout,
            )?),
        };
        Ok(Self {
            config,
            client,
            missing,
            known: HashMap::new(),
            pending: BTreeSet::new(),
            last_lookup: None,
            wait: MIN_INTERVAL,
            errors: [0; KubeApiError::COUNT],
            failures: Failures::default(),
            told: false,
        })
    }

    pub(super) fn drivers(&self) -> &[String] {
        if self.config.enabled {
            &self.config.drivers
        } else {
            &[]
        }
    }

    /// Gives each DRA device in `allocations` its UUID (and a MIG device
    /// its GPU), asking the API first where needed; `nvml` holds the GPU and
    /// MIG UUIDs NVML reports, when known.
    pub(super) fn resolve(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        allocations: &mut [GpuAllocation],
        nvml: Option<&HashSet<String>>,
    ) {
        let claimed: Vec<DeviceKey> = allocations
            .iter()
            .filter_map(|a| a.claim.as_ref())
            .map(|c| (c.driver.clone(), c.pool.clone(), c.device.clone()))
            .collect();
        if claimed.is_empty() {
            return;
        }
        let unresolved: BTreeSet<DeviceKey> = claimed
            .into_iter()
            .filter(|key| match self.known.get(key) {
                None => true,
                Some(known) => nvml.is_some_and(|uuids| !uuids.contains(&known.uuid)),
            })
            .collect();
        if !unresolved.is_empty() {
            self.look_up(runtime, unresolved);
        }
        for allocation in allocations.iter_mut() {
            let Some(claim) = allocation.claim.as_mut() else {
                continue;
            };
            let key = (
                claim.driver.clone(),
                claim.pool.clone(),
                claim.device.clone(),
            );
            if let Some(known) = self.known.get(&key) {
                allocation.uuid = known.uuid.clone();
                claim.mig = known.mig.clone();
            }
        }
    }

    /// Lists the node's slices if `unresolved` is worth a request now.
    fn look_up(&mut self, runtime: &tokio::runtime::Runtime, unresolved: BTreeSet<DeviceKey>) {
        let Some(client) = self.client.as_mut() else {
            if !self.told && self.config.enabled {
                self.told = true;
                info!(
                    devices = unresolved.len(),
                    "GPUs are allocated through DRA claims; to attribute them to their UUIDs, mount a service-account token with get and list on resourceslices.resource.k8s.io (deploy/kubernetes/overlays/dra, or the Helm chart's dra.enabled=true) and set NODE_NAME; until then they appear with an empty uuid"
                );
            }
            return;
        };
        let now = Instant::now();
        let since = self.last_lookup.map(|at| now - at);
        let changed = unresolved != self.pending;
        let due = match since {
            None => true,
            Some(since) if changed => since >= MIN_INTERVAL,
            Some(since) => since >= self.wait,
        };
        if !due {
            return;
        }
        let node = self.config.node_name.clone().unwrap_or_default();
        let drivers = self.config.drivers.clone();
        let listed = runtime.block_on(client.node_devices(&node, &drivers));
        self.last_lookup = Some(now);
        match listed {
            Ok(devices) => {
                debug!(api = %client.url(), devices = devices.len(), unresolved = unresolved.len(), "listed this node's ResourceSlices");
                if self.failures.succeeded() {
                    info!(api = %client.url(), "the Kubernetes API answers again; DRA devices are resolved");
                }
                self.known = known(devices);
            }
            Err(failure) => self.failed(failure),
        }
        let still: BTreeSet<DeviceKey> = unresolved
            .into_iter()
            .filter(|key| !self.known.contains_key(key))
            .collect();
        self.wait = match (still.is_empty(), changed) {
            (true, _) | (false, true) => MIN_INTERVAL,
            (false, false) => (self.wait * 2).min(MAX_INTERVAL),
        };
        self.pending = still;
    }

    fn failed(&mut self, failure: ApiFailure) {
        self.errors[failure.reason as usize] += 1;
        let url = self.client.as_ref().map(Client::url).unwrap_or_default();
        let advice = match failure.reason {
            KubeApiError::Forbidden => {
                "grant the exporter's service account get and list on resourceslices.resource.k8s.io (cluster-wide; deploy/kubernetes/overlays/dra has the ClusterRole)"
            }
            KubeApiError::Unauthorized => {
                "mount a valid service-account token (a projected serviceAccountToken volume)"
            }
            KubeApiError::Unreachable => {
                "check that the API server is reachable from the node (network policies, --kubernetes.api-url)"
            }
            KubeApiError::Tls => {
                "check the CA file (--kubernetes.ca-file, the kube-root-ca.crt ConfigMap)"
            }
            KubeApiError::NotServed => "DRA devices cannot be resolved on this cluster",
            KubeApiError::Other => "device-plugin attribution is unaffected",
        };
        let message = format!(
            "cannot resolve DRA devices through the Kubernetes API at {url}: {} ({}); {advice}; their allocations appear with an empty uuid",
            failure.message,
            failure.reason.name()
        );
        if self.failures.failed(&message) {
            warn!("{message}");
        }
    }

    /// The error counters, where the API is asked at all.
    pub(super) fn add_samples(&self, out: &mut Samples) {
        if self.client.is_none() {
            return;
        }
        for (reason, count) in KubeApiError::ALL.iter().zip(&self.errors) {
            out.add(&KUBERNETES_API_ERRORS, &[reason.name()], *count as f64);
        }
    }

    /// For `/health`.
    pub(super) fn status(&self, allocations: &[GpuAllocation]) -> DraStatus {
        let claimed = allocations.iter().filter(|a| a.claim.is_some());
        let devices = claimed.clone().count();
        let resolved = claimed.filter(|a| !a.uuid.is_empty()).count();
        let state = match (&self.client, self.missing) {
            _ if !self.config.enabled => "off",
            (None, Some(missing)) => missing,
            _ if self.failures.current().is_some() => "failing",
            _ => "resolving",
        };
        DraStatus {
            state,
            api: self.client.as_ref().map(Client::url),
            devices,
            resolved,
            error: self.failures.current().map(str::to_owned),
        }
    }
}

/// The devices a lookup found, by the kubelet's names for them.
fn known(devices: Vec<SliceDevice>) -> HashMap<DeviceKey, Known> {
    devices
        .into_iter()
        .filter_map(|device| {
            let uuid = device.uuid?;
            let mig = device.parent_uuid.map(|parent_uuid| MigOf {
                parent_uuid,
                profile: device.profile.unwrap_or_default(),
            });
            let key = (device.driver, device.pool, device.name);
            Some((key, Known { uuid, mig }))
        })
        .collect()
}
