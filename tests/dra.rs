//! GPUs allocated through Dynamic Resource Allocation: the fake kubelet
//! reports claims' devices by the driver's names, the fake Kubernetes API
//! serves the node's ResourceSlices, and the exporter attributes the GPUs
//! and MIG devices like device-plugin ones, asking the API as rarely as it can.

mod common;

use std::time::Duration;

use common::kube_api::{Device, FakeApi, Serves, token_file};
use common::kubelet::{Behaviour, FakeKubelet, claiming, pod, socket_path};
use common::{DoubleConfig, Driver, Exporter, Scrape, nvml_double, wait_for};
use system_info_exporter::testing::pod_resources::{ListPodResourcesResponse, PodResources};

const UUID0: &str = "GPU-00000000-0000-4000-8000-000000000000";
const UUID1: &str = "GPU-00000000-0000-4000-8000-000000000001";
const MIG: &str = "MIG-11111111-0000-5000-8000-000000000001";
const NODE: &str = "node-a";
const DRIVER: &str = "gpu.nvidia.com";

/// GPU 1 is in MIG mode with one MIG device.
const GPUS: &str = "gpu_count = 2
gpu.1.mig = 1
gpu.1.mig_slots = 7
gpu.1.mig_device.0 = MIG-11111111-0000-5000-8000-000000000001 gi=1 ci=0 profile=1g.10gb memory_total=10737418240 memory_used=0
";

fn slice() -> Vec<Device> {
    vec![
        Device {
            name: "gpu-0",
            uuid: UUID0,
            mig: None,
        },
        Device {
            name: "gpu-1",
            uuid: UUID1,
            mig: None,
        },
        Device {
            name: "gpu-1-mig-1g10gb-19-0",
            uuid: MIG,
            mig: Some((UUID1, "1g.10gb")),
        },
    ]
}

/// ml/train: a claim of GPU 0 shared by its two containers, and a device
/// of another driver; ml/infer: a claim of the MIG device; ops/plugin: a
/// device plugin's GPU 1.
fn pods() -> Vec<PodResources> {
    let mut train = pod("ml", "train", "main", "example.com/none", &[]);
    train.containers = vec![
        claiming("main", "ml", NODE, &[("gpu-claim", &[(DRIVER, "gpu-0")])]),
        claiming(
            "sidecar",
            "ml",
            NODE,
            &[
                ("gpu-claim", &[(DRIVER, "gpu-0")]),
                ("fpga-claim", &[("example.com", "fpga-0")]),
            ],
        ),
    ];
    let mut infer = pod("ml", "infer", "server", "example.com/none", &[]);
    infer.containers = vec![claiming(
        "server",
        "ml",
        NODE,
        &[("mig-claim", &[(DRIVER, "gpu-1-mig-1g10gb-19-0")])],
    )];
    vec![
        train,
        infer,
        pod("ops", "plugin", "agent", "nvidia.com/gpu", &[UUID1]),
    ]
}

struct Node {
    api: FakeApi,
    args: Vec<String>,
    config: DoubleConfig,
    kubelet: FakeKubelet,
}

fn node(test: &str, serves: Serves, token: &str) -> Node {
    let socket = socket_path(test);
    let reply = ListPodResourcesResponse {
        pod_resources: pods(),
    };
    let kubelet = FakeKubelet::start(&socket, Behaviour::Reply(reply));
    let token = token_file(test, token);
    let api = FakeApi::start(NODE, &token, serves);
    let args = vec![
        format!("--nvml.library={}", nvml_double(Driver::Current).display()),
        "--collect.interval=100ms".to_owned(),
        format!("--kubelet.pod-resources-socket={}", socket.display()),
        format!("--kubernetes.api-url={}", api.url),
        format!("--kubernetes.token-file={}", token.display()),
        format!("--kubernetes.node-name={NODE}"),
    ];
    Node {
        kubelet,
        api,
        args,
        config: DoubleConfig::new(test, GPUS),
    }
}

fn start(node: &Node, extra: &[&str]) -> Exporter {
    let mut args: Vec<&str> = node.args.iter().map(String::as_str).collect();
    args.extend(extra);
    Exporter::start(&args, Some(&node.config))
}

/// (uuid, pod, container, claim, claim_device) of every allocation.
fn allocations(s: &Scrape) -> Vec<[String; 5]> {
    let mut found: Vec<[String; 5]> = s
        .find("nvidia_gpu_allocation_info", &[])
        .into_iter()
        .map(|a| ["uuid", "pod", "container", "claim", "claim_device"].map(|l| a.labels[l].clone()))
        .collect();
    found.sort();
    found
}

fn resolved(exporter: &Exporter) -> Scrape {
    exporter.scrape_until("the DRA devices resolved", |s| {
        s.find("nvidia_gpu_allocation_info", &[("uuid", MIG)]).len() == 1
    })
}

fn row(uuid: &str, pod: &str, container: &str, claim: &str, device: &str) -> [String; 5] {
    [uuid, pod, container, claim, device].map(str::to_owned)
}

#[test]
fn claims_resolve_to_gpus_and_mig_devices_with_one_request() {
    // gpu-1 is not published yet.
    let mut first = slice();
    first.retain(|d| d.name != "gpu-1");
    let node = node("dra-resolve", Serves::V1(first), "t1");
    let exporter = start(&node, &[]);
    let s = resolved(&exporter);
    assert_eq!(
        allocations(&s),
        [
            row(UUID0, "train", "main", "gpu-claim", "gpu-0"),
            row(UUID0, "train", "sidecar", "gpu-claim", "gpu-0"),
            row(UUID1, "plugin", "agent", "", ""),
            row(MIG, "infer", "server", "mig-claim", "gpu-1-mig-1g10gb-19-0"),
        ]
    );
    let gpu0 = s.find("nvidia_gpu_allocation_info", &[("container", "main")]);
    assert_eq!(gpu0[0].labels["gpu"], "0");
    assert_eq!(gpu0[0].labels["claim_namespace"], "ml");
    // 100 collections of the pods collector, 100 ms apart, cost one request.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(node.api.requests(), 1);
    let health: serde_json::Value =
        serde_json::from_str(&exporter.get("/health").unwrap().body).unwrap();
    assert_eq!(health["kubernetes_dra"]["state"], "resolving");
    assert_eq!(health["kubernetes_dra"]["devices"], 3);
    assert_eq!(health["kubernetes_dra"]["resolved"], 3);

    // The token rotates; a new claim needs a lookup (30 s after the last).
    std::fs::write(
        node.args[4]
            .strip_prefix("--kubernetes.token-file=")
            .unwrap(),
        "t2",
    )
    .unwrap();
    node.api.set(Serves::V1(slice()));
    let mut more = pods();
    more[0].containers.push(claiming(
        "extra",
        "ml",
        NODE,
        &[("more", &[(DRIVER, "gpu-1")])],
    ));
    node.kubelet.set(Behaviour::Reply(ListPodResourcesResponse {
        pod_resources: more,
    }));
    let s = wait_for("the new claim", Duration::from_secs(45), || {
        let s = exporter.scrape();
        (!s.find(
            "nvidia_gpu_allocation_info",
            &[("claim", "more"), ("uuid", UUID1)],
        )
        .is_empty())
        .then_some(s)
    });
    assert_eq!(
        node.api.requests(),
        2,
        "one more request, with the new token"
    );
    assert_eq!(
        s.value(
            "system_info_exporter_kubernetes_api_errors_total",
            &[("reason", "unauthorized")]
        ),
        Some(0.0)
    );
}

#[test]
fn the_dcgm_view_labels_claimed_gpus_as_dcgm_exporter_does() {
    let node = node("dra-dcgm", Serves::V1beta1(slice()), "t");
    let exporter = start(&node, &["--metrics.format=dcgm"]);
    let s = exporter.scrape_until("the pods on the GPUs", |s| {
        s.find("DCGM_FI_DEV_GPU_TEMP", &[("gpu", "1"), ("pod", "infer")])
            .len()
            == 1
            && s.find("DCGM_FI_DEV_GPU_TEMP", &[("gpu", "0"), ("pod", "train")])
                .len()
                == 1
    });
    let gpu0 = &s.find("DCGM_FI_DEV_GPU_TEMP", &[("gpu", "0")])[0].labels;
    for (label, value) in [
        ("namespace", "ml"),
        ("container", "main"),
        ("dra_claim_name", "gpu-claim"),
        ("dra_claim_namespace", "ml"),
        ("dra_driver_name", DRIVER),
        ("dra_pool_name", NODE),
        ("dra_device_name", "gpu-0"),
    ] {
        assert_eq!(
            gpu0.get(label).map(String::as_str),
            Some(value),
            "{label}: {gpu0:?}"
        );
    }
    assert!(!gpu0.contains_key("dra_mig_profile"));
    // The MIG claim labels its GPU's series, with the MIG device's UUID.
    let gpu1 = &s.find("DCGM_FI_DEV_GPU_TEMP", &[("gpu", "1")])[0].labels;
    assert_eq!(gpu1["UUID"], UUID1);
    assert_eq!(gpu1["dra_mig_device_uuid"], MIG);
    assert_eq!(gpu1["dra_mig_profile"], "1g.10gb");
    assert_eq!(gpu1["dra_device_name"], "gpu-1-mig-1g10gb-19-0");
    // v1 and v1beta2 answered 404, v1beta1 served.
    assert_eq!(node.api.requests(), 3);
}

#[test]
fn without_access_to_the_api_claims_appear_without_uuid_and_one_warning_says_why() {
    let node = node("dra-forbidden", Serves::Forbidden, "t");
    let exporter = start(&node, &[]);
    let s = exporter.scrape_until("the error counted", |s| {
        s.value(
            "system_info_exporter_kubernetes_api_errors_total",
            &[("reason", "forbidden")],
        ) >= Some(1.0)
    });
    assert_eq!(
        allocations(&s),
        [
            row("", "infer", "server", "mig-claim", "gpu-1-mig-1g10gb-19-0"),
            row("", "train", "main", "gpu-claim", "gpu-0"),
            row("", "train", "sidecar", "gpu-claim", "gpu-0"),
            row(UUID1, "plugin", "agent", "", ""),
        ],
        "device-plugin attribution keeps working"
    );
    let health: serde_json::Value =
        serde_json::from_str(&exporter.get("/health").unwrap().body).unwrap();
    assert_eq!(health["kubernetes_dra"]["state"], "failing");
    assert!(
        health["kubernetes_dra"]["error"]
            .as_str()
            .unwrap()
            .contains("forbidden")
    );
    std::thread::sleep(Duration::from_secs(1));
    let log = exporter.log();
    assert_eq!(
        log.matches("cannot resolve DRA devices").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("get and list on resourceslices.resource.k8s.io"),
        "{log}"
    );
    assert_eq!(node.api.requests(), 1, "no retry within 30 s");
}

#[test]
fn without_a_token_one_line_says_how_to_turn_resolution_on() {
    let node = node("dra-no-token", Serves::V1(slice()), "t");
    // As in a pod without a token: no API named, no token file.
    let mut args: Vec<&str> = node.args[..3].iter().map(String::as_str).collect();
    args.push("--kubernetes.token-file=/nonexistent/token");
    let exporter = Exporter::start_with_env(
        &args,
        Some(&node.config),
        &[
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", "1"),
        ],
    );
    let s = exporter.scrape_until("the claims", |s| {
        s.find("nvidia_gpu_allocation_info", &[("claim", "gpu-claim")])
            .len()
            == 2
    });
    assert!(
        s.find(
            "nvidia_gpu_allocation_info",
            &[("claim", "gpu-claim"), ("uuid", "")]
        )
        .len()
            == 2
    );
    assert!(!s.has("system_info_exporter_kubernetes_api_errors_total"));
    std::thread::sleep(Duration::from_secs(1));
    let log = exporter.log();
    assert_eq!(
        log.matches("mount a service-account token").count(),
        1,
        "{log}"
    );
    assert_eq!(node.api.requests(), 0);
}
