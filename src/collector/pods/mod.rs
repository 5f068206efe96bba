//! Which pods hold which GPUs, from the kubelet's pod-resources API
//! (`v1.PodResourcesLister/List` over its unix socket).

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use tonic::transport::Endpoint;
use tracing::info;

use super::facts::GpuAllocation;
use super::{CollectError, Collection, Collector, Config, Shared, Started};
use crate::metrics::catalogue::{ALLOCATION_INFO, POD_RESOURCES_ERRORS};

/// The default socket of the kubelet's pod-resources API.
pub(crate) const DEFAULT_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";

/// A large node's reply exceeds gRPC's default 4 MiB receive limit.
const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// How long the last good mapping is still served while the kubelet fails.
const KEEP_STALE_MAPPING: Duration = Duration::from_secs(300);

/// Longest wait for the kubelet's answer; a slow kubelet never delays other collectors.
const MAX_TIMEOUT: Duration = Duration::from_secs(5);

pub mod proto;

struct PodCollector {
    shared: Arc<Shared>,
    socket: PathBuf,
    timeout: Duration,
    runtime: tokio::runtime::Runtime,
    last_good: Option<(Instant, Vec<GpuAllocation>)>,
    errors_total: u64,
}

pub(super) fn start(config: &Config, shared: &Arc<Shared>) -> Started {
    let timeout = config.interval.min(MAX_TIMEOUT);
    let pods = PodCollector::new(shared.clone(), config.pod_resources_socket.clone(), timeout)
        .map_err(|e| format!("cannot start pod attribution: {e}"))?;
    Ok(pods.map(|pods| Box::new(pods) as Box<dyn Collector>))
}

impl PodCollector {
    /// Returns `None`, after one info line, when the socket does not exist:
    /// not a Kubernetes node, or the pod-resources folder is not mounted.
    fn new(
        shared: Arc<Shared>,
        socket: PathBuf,
        timeout: Duration,
    ) -> std::io::Result<Option<Self>> {
        if !socket.exists() {
            info!(socket = %socket.display(), "pod attribution is off: no kubelet pod-resources socket");
            return Ok(None);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Some(Self {
            shared,
            socket,
            timeout,
            runtime,
            last_good: None,
            errors_total: 0,
        }))
    }

    fn add_samples(&self, allocations: &[GpuAllocation], out: &mut Collection) {
        // GPU indexes from the GPU collector's latest collection; a MIG
        // device, or a GPU it does not know, has an empty `gpu`.
        let gpus = self.shared.gpu.get();
        let index_of = |uuid: &str| {
            gpus.as_ref()
                .and_then(|status| status.gpus.iter().find(|g| g.uuid == uuid))
                .map(|g| g.index.to_string())
                .unwrap_or_default()
        };
        for allocation in allocations {
            let index = index_of(&allocation.uuid);
            out.samples.add(
                &ALLOCATION_INFO,
                &[
                    &index,
                    &allocation.uuid,
                    &allocation.namespace,
                    &allocation.pod,
                    &allocation.container,
                ],
                1.0,
            );
        }
        out.samples
            .add(&POD_RESOURCES_ERRORS, &[], self.errors_total as f64);
    }

    async fn list(
        &self,
    ) -> Result<proto::ListPodResourcesResponse, Box<dyn std::error::Error + Send + Sync>> {
        let channel = Endpoint::from_shared(format!("unix://{}", self.socket.display()))?
            .connect()
            .await?;
        let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_REPLY_BYTES);
        grpc.ready().await?;
        let reply = grpc
            .unary(
                tonic::Request::new(proto::ListPodResourcesRequest {}),
                PathAndQuery::from_static(proto::LIST_PATH),
                tonic_prost::ProstCodec::default(),
            )
            .await?;
        Ok(reply.into_inner())
    }
}

impl Collector for PodCollector {
    fn collect(&mut self, out: &mut Collection) -> Result<(), CollectError> {
        let reply = self
            .runtime
            .block_on(async { tokio::time::timeout(self.timeout, self.list()).await });
        let result = match reply {
            Ok(Ok(reply)) => {
                self.last_good = Some((Instant::now(), gpu_allocations(&reply)));
                Ok(())
            }
            failure => {
                let cause = match failure {
                    Ok(Err(error)) => diagnose(&self.socket, &error.to_string()),
                    _ => format!(
                        "no answer within {:?}: the kubelet is slow or hung",
                        self.timeout
                    ),
                };
                self.errors_total += 1;
                if self
                    .last_good
                    .as_ref()
                    .is_some_and(|(at, _)| at.elapsed() > KEEP_STALE_MAPPING)
                {
                    self.last_good = None;
                }
                let meanwhile = match self.last_good {
                    Some(_) => "keeping the last mapping for up to 5 minutes",
                    None => "GPUs are not attributed to pods until it answers",
                };
                Err(CollectError::Failed(format!(
                    "cannot list pod resources at {}: {cause}; {meanwhile}",
                    self.socket.display()
                )))
            }
        };
        let allocations = self.last_good.as_ref().map_or(&[][..], |(_, a)| a);
        self.add_samples(allocations, out);
        out.allocations = Some(allocations.to_vec());
        result
    }
}

/// Why the kubelet's socket could not be used, and what to do: gRPC's own
/// error ("transport error") does not say.
fn diagnose(socket: &Path, error: &str) -> String {
    use std::io::ErrorKind;
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(socket) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            "it does not exist any more: is the kubelet running, and its pod-resources folder mounted?".to_owned()
        }
        Err(e) => format!("cannot read it: {e}"),
        Ok(meta) if meta.is_dir() => {
            "it is a directory, not the kubelet's socket: point --kubelet.pod-resources-socket at the kubelet.sock inside it".to_owned()
        }
        Ok(meta) if !meta.file_type().is_socket() => {
            "it is a regular file, not a socket: point --kubelet.pod-resources-socket at the kubelet's socket".to_owned()
        }
        Ok(_) => match UnixStream::connect(socket) {
            Err(e) if e.kind() == ErrorKind::PermissionDenied => format!(
                "permission denied: the exporter runs as uid {}, and the kubelet lets only root connect; run it as root (runAsUser: 0, or the Helm chart's runAsRoot=true)",
                // SAFETY: getuid only reads the process's user id.
                unsafe { libc::getuid() }
            ),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                "nothing listens on it: is the kubelet running?".to_owned()
            }
            Err(e) => e.to_string(),
            // It connects; the call itself failed (e.g. a kubelet without
            // the v1 pod-resources API).
            Ok(_) => error.to_owned(),
        },
    }
}

/// The NVIDIA devices of every container: whole GPUs (`nvidia.com/gpu`) and
/// MIG devices (`nvidia.com/mig-*`), by UUID. Time-slicing replicas
/// (`GPU-...::3`) name the same GPU and count once per container.
fn gpu_allocations(reply: &proto::ListPodResourcesResponse) -> Vec<GpuAllocation> {
    let mut allocations = Vec::new();
    for pod in &reply.pod_resources {
        for container in &pod.containers {
            for devices in &container.devices {
                let name = devices.resource_name.as_str();
                if name != "nvidia.com/gpu" && !name.starts_with("nvidia.com/mig-") {
                    continue;
                }
                for id in &devices.device_ids {
                    let uuid = id.split_once("::").map_or(id.as_str(), |(uuid, _)| uuid);
                    allocations.push(GpuAllocation {
                        uuid: uuid.to_owned(),
                        namespace: pod.namespace.clone(),
                        pod: pod.name.clone(),
                        container: container.name.clone(),
                    });
                }
            }
        }
    }
    allocations.sort_by(|a, b| {
        (&a.uuid, &a.namespace, &a.pod, &a.container).cmp(&(
            &b.uuid,
            &b.namespace,
            &b.pod,
            &b.container,
        ))
    });
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

    #[test]
    fn maps_gpus_and_mig_devices_to_containers() {
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
                }],
            }],
        };
        let uuids: Vec<_> = gpu_allocations(&reply)
            .into_iter()
            .map(|a| a.uuid)
            .collect();
        assert_eq!(uuids, ["GPU-a", "GPU-b", "MIG-c"]);
    }
}
