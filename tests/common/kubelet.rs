//! A fake kubelet: the pod-resources gRPC service on a unix socket, with a
//! reply the test sets and can switch to never answering.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use system_info_exporter::testing::pod_resources::{
    ClaimResource, ContainerDevices, ContainerResources, DynamicResource, ListPodResourcesRequest,
    ListPodResourcesResponse, PodResources,
};
use tonic::codegen::{BoxFuture, Service, http};

#[derive(Clone)]
pub enum Behaviour {
    Reply(ListPodResourcesResponse),
    /// Accepts the call and never answers.
    Hang,
}

#[derive(Clone)]
pub struct FakeKubelet {
    behaviour: Arc<Mutex<Behaviour>>,
    _runtime: Arc<tokio::runtime::Runtime>,
}

impl FakeKubelet {
    /// Serves on `socket` from a runtime of its own until dropped.
    pub fn start(socket: &Path, behaviour: Behaviour) -> Self {
        let _ = std::fs::remove_file(socket);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let behaviour = Arc::new(Mutex::new(behaviour));
        let listener = runtime
            .block_on(async { tokio::net::UnixListener::bind(socket) })
            .unwrap();
        let service = Lister(behaviour.clone());
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        );
        Self {
            behaviour,
            _runtime: Arc::new(runtime),
        }
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }
}

/// A socket path for `test`; unix socket paths must stay under 108 bytes.
pub fn socket_path(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sie-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{test}.sock"))
}

/// A kubelet whose one pod `ml/train` holds the GPU `uuid`, and the flag
/// that points the exporter at it.
pub fn holding(test: &str, uuid: &str) -> (FakeKubelet, String) {
    let socket = socket_path(test);
    let reply = ListPodResourcesResponse {
        pod_resources: vec![pod("ml", "train", "main", "nvidia.com/gpu", &[uuid])],
    };
    let kubelet = FakeKubelet::start(&socket, Behaviour::Reply(reply));
    (
        kubelet,
        format!("--kubelet.pod-resources-socket={}", socket.display()),
    )
}

/// One pod with one container holding `devices` of `resource`.
pub fn pod(
    namespace: &str,
    name: &str,
    container: &str,
    resource: &str,
    devices: &[&str],
) -> PodResources {
    PodResources {
        name: name.into(),
        namespace: namespace.into(),
        containers: vec![ContainerResources {
            name: container.into(),
            devices: vec![ContainerDevices {
                resource_name: resource.into(),
                device_ids: devices.iter().map(|d| d.to_string()).collect(),
            }],
            dynamic_resources: Vec::new(),
        }],
    }
}

/// A container holding the devices of DRA claims: each claim (in the pod's
/// namespace) with its (driver, device) pairs, of the pool `node`.
pub fn claiming(
    name: &str,
    namespace: &str,
    node: &str,
    claims: &[(&str, &[(&str, &str)])],
) -> ContainerResources {
    ContainerResources {
        name: name.into(),
        devices: Vec::new(),
        dynamic_resources: claims
            .iter()
            .map(|(claim, devices)| DynamicResource {
                claim_name: (*claim).into(),
                claim_namespace: namespace.into(),
                claim_resources: devices
                    .iter()
                    .map(|(driver, device)| ClaimResource {
                        cdi_devices: Vec::new(),
                        driver_name: (*driver).into(),
                        pool_name: node.into(),
                        device_name: (*device).into(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[derive(Clone)]
struct Lister(Arc<Mutex<Behaviour>>);

impl tonic::server::NamedService for Lister {
    const NAME: &'static str = "v1.PodResourcesLister";
}

impl Service<http::Request<tonic::body::Body>> for Lister {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let behaviour = self.0.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(List(behaviour), request).await)
        })
    }
}

struct List(Arc<Mutex<Behaviour>>);

impl tonic::server::UnaryService<ListPodResourcesRequest> for List {
    type Response = ListPodResourcesResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;

    fn call(&mut self, _: tonic::Request<ListPodResourcesRequest>) -> Self::Future {
        let behaviour = self.0.lock().unwrap().clone();
        Box::pin(async move {
            match behaviour {
                Behaviour::Reply(reply) => Ok(tonic::Response::new(reply)),
                Behaviour::Hang => std::future::pending().await,
            }
        })
    }
}
