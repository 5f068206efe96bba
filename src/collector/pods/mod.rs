//! Which pods hold which GPUs, from the kubelet's pod-resources API
//! (`v1.PodResourcesLister/List` over its unix socket): the device plugin's
//! devices by UUID, and DRA claims' devices resolved to UUIDs through the
//! node's ResourceSlices ([`dra`], [`kube_api`]).

mod allocations;
mod dra;
mod kube_api;
pub mod proto;

use std::collections::HashSet;
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
use allocations::gpu_allocations;
pub(crate) use dra::DraConfig;
use dra::Resolver;
pub(crate) use kube_api::{CA_FILE, TOKEN_FILE};

/// The default socket of the kubelet's pod-resources API.
pub(crate) const DEFAULT_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";

/// A large node's reply exceeds gRPC's default 4 MiB receive limit.
const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// How long the last good mapping is still served while the kubelet fails.
const KEEP_STALE_MAPPING: Duration = Duration::from_secs(300);

/// Longest wait for the kubelet's answer; a slow kubelet never delays other collectors.
const MAX_TIMEOUT: Duration = Duration::from_secs(5);

struct PodCollector {
    shared: Arc<Shared>,
    socket: PathBuf,
    timeout: Duration,
    runtime: tokio::runtime::Runtime,
    /// The allocations of the last answer, DRA devices unresolved, and when.
    last_good: Option<(Instant, Vec<GpuAllocation>)>,
    errors_total: u64,
    resolver: Resolver,
}

pub(super) fn start(config: &Config, shared: &Arc<Shared>) -> Started {
    let timeout = config.interval.min(MAX_TIMEOUT);
    let socket = config.pod_resources_socket.clone();
    if !socket.exists() {
        info!(socket = %socket.display(), "pod attribution is off: no kubelet pod-resources socket");
        return Ok(None);
    }
    let resolver = Resolver::new(config.dra.clone(), timeout)?;
    let pods = PodCollector::new(shared.clone(), socket, timeout, resolver)
        .map_err(|e| format!("cannot start pod attribution: {e}"))?;
    Ok(Some(Box::new(pods)))
}

impl PodCollector {
    fn new(
        shared: Arc<Shared>,
        socket: PathBuf,
        timeout: Duration,
        resolver: Resolver,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            shared,
            socket,
            timeout,
            runtime,
            last_good: None,
            errors_total: 0,
            resolver,
        })
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
            let claim = allocation.claim.as_ref();
            let of = |field: fn(&super::facts::ClaimDevice) -> &str| claim.map_or("", field);
            out.samples.add(
                &ALLOCATION_INFO,
                &[
                    &index,
                    &allocation.uuid,
                    &allocation.namespace,
                    &allocation.pod,
                    &allocation.container,
                    of(|c| &c.claim),
                    of(|c| &c.claim_namespace),
                    of(|c| &c.device),
                ],
                1.0,
            );
        }
        out.samples
            .add(&POD_RESOURCES_ERRORS, &[], self.errors_total as f64);
        self.resolver.add_samples(&mut out.samples);
    }

    /// The allocations of the last answer, DRA devices resolved where they can be.
    fn resolved(&mut self) -> Vec<GpuAllocation> {
        let mut allocations = self
            .last_good
            .as_ref()
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        let status = self.shared.gpu.get();
        let nvml: Option<HashSet<String>> = status.as_ref().filter(|s| s.nvml_up).map(|s| {
            let gpus = s.gpus.iter().map(|g| g.uuid.clone());
            gpus.chain(s.mig_uuids.iter().cloned()).collect()
        });
        self.resolver
            .resolve(&self.runtime, &mut allocations, nvml.as_ref());
        self.shared.dra.set(self.resolver.status(&allocations));
        allocations
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
                let allocations = gpu_allocations(&reply, self.resolver.drivers());
                self.last_good = Some((Instant::now(), allocations));
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
        let allocations = self.resolved();
        self.add_samples(&allocations, out);
        out.allocations = Some(allocations);
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
