//! GPUs labelled with the pods that hold them, read from a fake kubelet.

mod common;

use common::kubelet::{Behaviour, FakeKubelet, pod, socket_path};
use common::{DoubleConfig, Driver, Exporter, nvml_double};
use system_info_exporter::testing::pod_resources::ListPodResourcesResponse;

const UUID0: &str = "GPU-00000000-0000-4000-8000-000000000000";
const UUID1: &str = "GPU-00000000-0000-4000-8000-000000000001";

fn start(test: &str, socket: &std::path::Path) -> Exporter {
    start_every(test, socket, "200ms")
}

/// The kubelet gets at most one interval (and at most 5 s) to answer.
fn start_every(test: &str, socket: &std::path::Path, interval: &str) -> Exporter {
    let config = DoubleConfig::new(test, "gpu_count = 2\n");
    let args = [
        format!("--nvml.library={}", nvml_double(Driver::Current).display()),
        format!("--kubelet.pod-resources-socket={}", socket.display()),
        format!("--collect.interval={interval}"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Exporter::start(&args, Some(&config))
}

fn reply() -> ListPodResourcesResponse {
    ListPodResourcesResponse {
        pod_resources: vec![
            pod(
                "ml",
                "train-0",
                "worker",
                "nvidia.com/gpu",
                &[&format!("{UUID0}::0"), &format!("{UUID0}::1"), UUID1],
            ),
            pod(
                "serving",
                "infer-7",
                "server",
                "nvidia.com/mig-1g.10gb",
                &["MIG-11111111-2222-3333-4444-555555555555"],
            ),
            pod("ml", "cpu-only", "main", "example.com/fpga", &["fpga-0"]),
        ],
    }
}

#[test]
fn gpus_are_labelled_with_the_pods_that_hold_them() {
    let socket = socket_path("labels");
    let _kubelet = FakeKubelet::start(&socket, Behaviour::Reply(reply()));
    let exporter = start("pods-labels", &socket);
    // The GPU index comes from the GPU collector's latest collection, so the
    // pods collector's first collection may precede it.
    let s = exporter.scrape_until("allocations with GPU indexes", |s| {
        !s.find(
            "nvidia_gpu_allocation_info",
            &[("uuid", UUID0), ("gpu", "0")],
        )
        .is_empty()
    });

    let held_by = |uuid: &str| {
        s.find("nvidia_gpu_allocation_info", &[("uuid", uuid)])
            .iter()
            .map(|a| {
                let l = &a.labels;
                format!(
                    "{} {} {}/{}/{}",
                    l["gpu"], l["uuid"], l["namespace"], l["pod"], l["container"]
                )
            })
            .collect::<Vec<_>>()
    };
    // Time-slicing replicas (::0, ::1) of one GPU count once.
    assert_eq!(held_by(UUID0), [format!("0 {UUID0} ml/train-0/worker")]);
    assert_eq!(held_by(UUID1), [format!("1 {UUID1} ml/train-0/worker")]);
    // A MIG device has no GPU index of its own.
    let mig = "MIG-11111111-2222-3333-4444-555555555555";
    assert_eq!(held_by(mig), [format!(" {mig} serving/infer-7/server")]);
    assert_eq!(
        s.find("nvidia_gpu_allocation_info", &[]).len(),
        3,
        "non-NVIDIA devices are ignored"
    );
    assert_eq!(
        s.value(
            "system_info_exporter_collect_success",
            &[("collector", "pods")]
        ),
        Some(1.0)
    );
    assert_eq!(
        s.value("system_info_exporter_pod_resources_errors_total", &[]),
        Some(0.0)
    );
}

#[test]
fn a_reply_over_4_mib_is_read() {
    let socket = socket_path("large");
    let mut large = reply();
    // About 8 MiB of pods without GPUs, twice gRPC's default receive limit.
    for i in 0..80_000 {
        large.pod_resources.push(pod(
            "batch",
            &format!("job-{i:064}"),
            "main",
            "example.com/none",
            &[],
        ));
    }
    let _kubelet = FakeKubelet::start(&socket, Behaviour::Reply(large));
    // Encoding and decoding 8 MiB in a debug build takes longer than 200 ms.
    let exporter = start_every("pods-large", &socket, "5s");
    let s = exporter.scrape_until("allocations", |s| {
        s.has("system_info_exporter_pod_resources_errors_total")
    });
    assert_eq!(
        s.find("nvidia_gpu_allocation_info", &[("pod", "train-0")])
            .len(),
        2,
        "{}",
        exporter.log()
    );
    assert_eq!(
        s.value("system_info_exporter_pod_resources_errors_total", &[]),
        Some(0.0)
    );
}

#[test]
fn a_hanging_kubelet_keeps_the_last_mapping_and_counts_errors() {
    let socket = socket_path("hang");
    let kubelet = FakeKubelet::start(&socket, Behaviour::Reply(reply()));
    let exporter = start("pods-hang", &socket);
    exporter.scrape_until("allocations", |s| s.has("nvidia_gpu_allocation_info"));

    kubelet.set(Behaviour::Hang);
    let s = exporter.scrape_until("errors", |s| {
        s.value("system_info_exporter_pod_resources_errors_total", &[])
            .is_some_and(|n| n >= 2.0)
    });
    assert_eq!(
        s.value(
            "system_info_exporter_collect_success",
            &[("collector", "pods")]
        ),
        Some(0.0)
    );
    assert_eq!(
        s.find("nvidia_gpu_allocation_info", &[]).len(),
        3,
        "the last mapping is kept"
    );
    assert_eq!(
        s.value("nvidia_gpu_up", &[("gpu", "0")]),
        Some(1.0),
        "other collectors are unaffected"
    );
    assert_eq!(exporter.get("/health").unwrap().status, 200);
    assert_eq!(
        exporter.log().matches("cannot list pod resources").count(),
        1,
        "logged once"
    );

    kubelet.set(Behaviour::Reply(ListPodResourcesResponse::default()));
    exporter.scrape_until("the new, empty mapping", |s| {
        s.value(
            "system_info_exporter_collect_success",
            &[("collector", "pods")],
        ) == Some(1.0)
            && !s.has("nvidia_gpu_allocation_info")
    });
}

#[test]
fn without_the_socket_attribution_is_off() {
    let exporter = start("pods-absent", &socket_path("absent-never-created"));
    let s = exporter.scrape_until("GPU metrics", |s| {
        s.has("nvidia_gpu_up") && s.has("host_info")
    });
    assert!(!s.has("nvidia_gpu_allocation_info"));
    assert!(!s.has("system_info_exporter_pod_resources_errors_total"));
    assert!(
        s.find(
            "system_info_exporter_collect_success",
            &[("collector", "pods")]
        )
        .is_empty()
    );
    let log = exporter.log();
    assert!(log.contains("pod attribution is off"), "{log}");
    assert!(!log.contains("WARN") && !log.contains("ERROR"), "{log}");
}
