//! The dcgm view on collections built by hand.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::fields::FIELDS;
use super::*;
use crate::collector::facts::{GpuIdentity, GpuInventory, MigDevice};
use crate::metrics::catalogue::{
    self, CLOCK, MEMORY_USED, NVLINK_RECEIVE, NVLINK_TRANSMIT, PCIE_TRANSMIT, TEMPERATURE,
    TENSOR_ACTIVE, UTILIZATION, XID_ERRORS,
};

const UUID: &str = "GPU-a";
const MIB: f64 = 1024.0 * 1024.0;

/// A GPU collection of GPU 0 with `samples`.
fn gpu(samples: Samples) -> Collection {
    gpu_with_mig(samples, Vec::new())
}

fn gpu_with_mig(samples: Samples, mig_devices: Vec<MigDevice>) -> Collection {
    Collection {
        samples,
        gpus: Some(GpuInventory {
            driver_version: "550.54.15".into(),
            gpus: vec![GpuIdentity {
                index: 0,
                uuid: UUID.into(),
                name: "NVIDIA A100-SXM4-80GB".into(),
                pci_bus_id: "00000000:10:00.0".into(),
            }],
            mig_devices,
        }),
        allocations: None,
        jobs: None,
    }
}

/// A pods collection with these allocations: (uuid, namespace, pod, container).
fn pods(allocations: &[(&str, &str, &str, &str)], samples: Samples) -> Collection {
    let allocations = allocations
        .iter()
        .map(|(uuid, namespace, pod, container)| GpuAllocation {
            uuid: (*uuid).into(),
            namespace: (*namespace).into(),
            pod: (*pod).into(),
            container: (*container).into(),
            claim: None,
        })
        .collect();
    Collection {
        samples,
        gpus: None,
        allocations: Some(allocations),
        jobs: None,
    }
}

fn render(view: &View, collection: &Collection, at: Instant) -> String {
    view.render(collection, at)
}

#[test]
fn gpu_readings_become_dcgm_fields_with_dcgm_labels_and_units() {
    let mut s = Samples::default();
    s.add(&CLOCK, &["0", UUID, "sm"], 1.41e9);
    s.add(&CLOCK, &["0", UUID, "graphics"], 1.2e9);
    s.add(&TEMPERATURE, &["0", UUID], 41.0);
    s.add(&UTILIZATION, &["0", UUID], 0.29);
    s.add(&MEMORY_USED, &["0", UUID], 2.5 * MIB + 7.0);
    let text = render(
        &View::new("node-1".into(), Counters::default()),
        &gpu(s),
        Instant::now(),
    );
    let labels = "gpu=\"0\",UUID=\"GPU-a\",pci_bus_id=\"00000000:10:00.0\",device=\"nvidia0\",\
                  modelName=\"NVIDIA A100-SXM4-80GB\",Hostname=\"node-1\",DCGM_FI_DRIVER_VERSION=\"550.54.15\"";
    let expected = format!(
        "# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency in MHz.\n\
         # TYPE DCGM_FI_DEV_SM_CLOCK gauge\n\
         DCGM_FI_DEV_SM_CLOCK{{{labels}}} 1410\n\
         # HELP DCGM_FI_DEV_GPU_TEMP GPU temperature in degrees Celsius.\n\
         # TYPE DCGM_FI_DEV_GPU_TEMP gauge\n\
         DCGM_FI_DEV_GPU_TEMP{{{labels}}} 41\n\
         # HELP DCGM_FI_DEV_GPU_UTIL GPU utilization in percent.\n\
         # TYPE DCGM_FI_DEV_GPU_UTIL gauge\n\
         DCGM_FI_DEV_GPU_UTIL{{{labels}}} 29\n\
         # HELP DCGM_FI_DEV_FB_USED Frame buffer memory used in MiB.\n\
         # TYPE DCGM_FI_DEV_FB_USED gauge\n\
         DCGM_FI_DEV_FB_USED{{{labels}}} 2\n"
    );
    assert_eq!(text, expected);
}

#[test]
fn other_collectors_contribute_nothing_and_pods_label_the_gpu_series() {
    let view = View::new(String::new(), Counters::default());
    let mut errors = Samples::default();
    errors.add(&catalogue::POD_RESOURCES_ERRORS, &[], 2.0);
    let held = [
        (UUID, "ml", "train", "worker"),
        (UUID, "aa", "first", "main"),
    ];
    assert_eq!(
        view.render(&pods(&held, errors), Instant::now()),
        "# HELP system_info_exporter_pod_resources_errors_total Calls to the kubelet pod-resources API that failed or timed out.\n\
         # TYPE system_info_exporter_pod_resources_errors_total counter\n\
         system_info_exporter_pod_resources_errors_total 2\n"
    );
    let mut s = Samples::default();
    s.add(&TEMPERATURE, &["0", UUID], 41.0);
    let text = render(&view, &gpu(s), Instant::now());
    // No Hostname label when there is none, and one pod per series.
    assert!(
        text.contains(
            "modelName=\"NVIDIA A100-SXM4-80GB\",DCGM_FI_DRIVER_VERSION=\"550.54.15\",\
             container=\"main\",namespace=\"aa\",pod=\"first\"} 41"
        ),
        "{text}"
    );
    // The host collector's samples are not part of the view.
    let mut samples = Samples::default();
    samples.add(&catalogue::HOST_CPUS, &[], 8.0);
    let host = Collection {
        samples,
        ..Collection::default()
    };
    assert_eq!(view.render(&host, Instant::now()), "");
}

#[test]
fn each_slurm_job_of_a_gpu_or_gpu_instance_gets_a_copy_of_its_series() {
    use crate::collector::facts::JobAssignment;
    let view = View::new(String::new(), Counters::default());
    let job = |gpu_instance: &str, job: &str| JobAssignment {
        uuid: UUID.into(),
        gpu_instance: gpu_instance.into(),
        job: job.into(),
    };
    let jobs = Collection {
        jobs: Some(vec![job("", "1234"), job("", "1235"), job("3", "77")]),
        ..Collection::default()
    };
    assert_eq!(view.render(&jobs, Instant::now()), "");
    view.render(
        &pods(&[(UUID, "ml", "train", "worker")], Samples::default()),
        Instant::now(),
    );
    let mut s = Samples::default();
    s.add(&TEMPERATURE, &["0", UUID], 41.0);
    s.add(&TENSOR_ACTIVE, &["0", UUID, "3"], 0.5);
    s.add(&TENSOR_ACTIVE, &["0", UUID, "4"], 0.25);
    let mig = MigDevice {
        gpu_uuid: UUID.into(),
        uuid: "MIG-a".into(),
        gpu_instance: 3,
        compute_instance: 0,
        profile: "1g.10gb".into(),
    };
    let text = render(&view, &gpu_with_mig(s, vec![mig]), Instant::now());
    let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let identity = "gpu=\"0\",UUID=\"GPU-a\",pci_bus_id=\"00000000:10:00.0\",device=\"nvidia0\",\
               modelName=\"NVIDIA A100-SXM4-80GB\",";
    let driver = "DCGM_FI_DRIVER_VERSION=\"550.54.15\"";
    // hpc_job among the other attributes, by name, as dcgm-exporter sorts them.
    let pod = "namespace=\"ml\",pod=\"train\"";
    assert_eq!(
        series,
        [
            format!(
                "DCGM_FI_DEV_GPU_TEMP{{{identity}{driver},container=\"worker\",hpc_job=\"1234\",{pod}}} 41"
            ),
            format!(
                "DCGM_FI_DEV_GPU_TEMP{{{identity}{driver},container=\"worker\",hpc_job=\"1235\",{pod}}} 41"
            ),
            // The MIG GPU instance has its own job; instance 4 has none.
            format!(
                "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{{{identity}GPU_I_PROFILE=\"1g.10gb\",GPU_I_ID=\"3\",{driver},hpc_job=\"77\"}} 0.5"
            ),
            format!(
                "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{{{identity}GPU_I_PROFILE=\"\",GPU_I_ID=\"4\",{driver}}} 0.25"
            ),
        ]
    );
    // Jobs that end are gone from the next GPU collection.
    let none = Collection {
        jobs: Some(Vec::new()),
        ..Collection::default()
    };
    view.render(&none, Instant::now());
    let mut s = Samples::default();
    s.add(&TEMPERATURE, &["0", UUID], 41.0);
    let text = render(&view, &gpu(s), Instant::now());
    assert!(!text.contains("hpc_job"), "{text}");
}

#[test]
fn counters_become_rates_between_consecutive_collections() {
    let view = View::new("h".into(), Counters::default());
    let start = Instant::now();
    let collection = |tx: f64, nvlink: f64| {
        let mut s = Samples::default();
        s.add(&PCIE_TRANSMIT, &["0", UUID, ""], tx);
        s.add(&NVLINK_TRANSMIT, &["0", UUID, ""], nvlink);
        s.add(&NVLINK_RECEIVE, &["0", UUID, ""], nvlink);
        gpu(s)
    };
    let first = render(&view, &collection(1000.0, 0.0), start);
    assert!(
        !first.contains("PCIE_TX_BYTES"),
        "no rate from one collection: {first}"
    );
    // Other collectors' collections in between change nothing.
    view.render(&Collection::default(), start + Duration::from_secs(1));
    view.render(
        &pods(&[], Samples::default()),
        start + Duration::from_secs(1),
    );
    let second = render(
        &view,
        &collection(5000.0, 1_024_000.0),
        start + Duration::from_secs(2),
    );
    let scrape = values(&second);
    assert_eq!(scrape["DCGM_FI_PROF_PCIE_TX_BYTES"], 2000.0);
    // (2 × 1 024 000 bytes) / 2 s = 1000 KiB/s, ÷ 1000 as DCGM does.
    assert_eq!(scrape["DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"], 1.0);
    // A counter that went backwards (driver reload) gives no rate once.
    let third = render(
        &view,
        &collection(10.0, 0.0),
        start + Duration::from_secs(3),
    );
    assert!(!third.contains("PCIE_TX_BYTES"), "{third}");
    let fourth = render(
        &view,
        &collection(110.0, 0.0),
        start + Duration::from_secs(4),
    );
    assert_eq!(values(&fourth)["DCGM_FI_PROF_PCIE_TX_BYTES"], 100.0);
}

#[test]
fn xid_errors_report_the_xid_whose_count_increased_last() {
    let view = View::new("h".into(), Counters::default());
    let collection = |counts: &[(&str, f64)]| {
        let mut s = Samples::default();
        for (xid, count) in counts {
            s.add(&XID_ERRORS, &["0", UUID, xid], *count);
        }
        render(&view, &gpu(s), Instant::now())
    };
    let series = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("DCGM_FI_DEV_XID_ERRORS{"))
            .map(|l| {
                let at = l.find("err_code").unwrap();
                l[at..].to_owned()
            })
    };
    let none = collection(&[("48", 0.0), ("79", 0.0)]);
    assert_eq!(
        series(&none).unwrap(),
        "err_code=\"0\",err_msg=\"No Error\"} 0"
    );
    let first = collection(&[("13", 2.0), ("48", 0.0), ("79", 0.0)]);
    assert_eq!(
        series(&first).unwrap(),
        "err_code=\"13\",err_msg=\"Graphics Engine Exception\"} 13"
    );
    // 13 stays the last XID while no count changes...
    let same = collection(&[("13", 2.0), ("48", 0.0), ("79", 0.0)]);
    assert_eq!(series(&same), series(&first));
    // ...and 48 takes over when it occurs, though 13 is counted more often.
    let later = collection(&[("13", 2.0), ("48", 1.0), ("79", 0.0)]);
    assert_eq!(
        series(&later).unwrap(),
        "err_code=\"48\",err_msg=\"Double Bit ECC Error\"} 48"
    );
    let unknown = collection(&[("13", 2.0), ("48", 1.0), ("79", 0.0), ("999", 1.0)]);
    assert_eq!(
        series(&unknown).unwrap(),
        "err_code=\"999\",err_msg=\"Unknown Error\"} 999"
    );
    // The last need not be the highest code, and another collector's
    // collection in between does not make old counts look new.
    let low = collection(&[("5", 1.0), ("13", 2.0), ("48", 1.0), ("999", 1.0)]);
    assert_eq!(
        series(&low).unwrap(),
        "err_code=\"5\",err_msg=\"Unknown Error\"} 5"
    );
    view.render(&Collection::default(), Instant::now());
    let again = collection(&[("5", 1.0), ("13", 2.0), ("48", 1.0), ("999", 1.0)]);
    assert_eq!(series(&again), series(&low));
    // Without watched events there is no XID field at all.
    assert!(series(&collection(&[])).is_none());
}

#[test]
fn mig_instances_carry_their_profile_and_the_pod_holding_them() {
    let view = View::new("h".into(), Counters::default());
    let held = [("MIG-x", "ml", "infer", "server")];
    view.render(&pods(&held, Samples::default()), Instant::now());
    let mut s = Samples::default();
    s.add(&TENSOR_ACTIVE, &["0", UUID, ""], 0.25);
    s.add(&TENSOR_ACTIVE, &["0", UUID, "3"], 0.5);
    let mig = MigDevice {
        gpu_uuid: UUID.into(),
        uuid: "MIG-x".into(),
        gpu_instance: 3,
        compute_instance: 0,
        profile: "1g.10gb".into(),
    };
    let text = render(&view, &gpu_with_mig(s, vec![mig]), Instant::now());
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let base = "gpu=\"0\",UUID=\"GPU-a\",pci_bus_id=\"00000000:10:00.0\",device=\"nvidia0\",\
                modelName=\"NVIDIA A100-SXM4-80GB\"";
    let after = "Hostname=\"h\",DCGM_FI_DRIVER_VERSION=\"550.54.15\"";
    assert_eq!(
        lines,
        [
            format!("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{{{base},{after}}} 0.25"),
            format!(
                "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{{{base},GPU_I_PROFILE=\"1g.10gb\",GPU_I_ID=\"3\",{after},\
                 container=\"server\",namespace=\"ml\",pod=\"infer\"}} 0.5"
            ),
        ]
    );
}

#[test]
fn a_counters_file_chooses_the_fields_their_order_help_and_labels() {
    let file = "DCGM_FI_DEV_GPU_UTIL, counter, Utilization (in %).\n\
                DCGM_FI_DEV_SM_CLOCK, gauge, SM clock (in MHz).\n";
    let counters = counters::parse(file.as_bytes()).unwrap();
    let mut s = Samples::default();
    s.add(&CLOCK, &["0", UUID, "sm"], 1.41e9);
    s.add(&TEMPERATURE, &["0", UUID], 41.0);
    s.add(&UTILIZATION, &["0", UUID], 0.29);
    let text = render(&View::new("n".into(), counters), &gpu(s), Instant::now());
    // No driver version without its label row; the temperature is not listed.
    let labels = "gpu=\"0\",UUID=\"GPU-a\",pci_bus_id=\"00000000:10:00.0\",device=\"nvidia0\",\
                  modelName=\"NVIDIA A100-SXM4-80GB\",Hostname=\"n\"";
    assert_eq!(
        text,
        format!(
            "# HELP DCGM_FI_DEV_GPU_UTIL Utilization (in %).\n\
             # TYPE DCGM_FI_DEV_GPU_UTIL counter\n\
             DCGM_FI_DEV_GPU_UTIL{{{labels}}} 29\n\
             # HELP DCGM_FI_DEV_SM_CLOCK SM clock (in MHz).\n\
             # TYPE DCGM_FI_DEV_SM_CLOCK gauge\n\
             DCGM_FI_DEV_SM_CLOCK{{{labels}}} 1410\n"
        )
    );
}

/// Field name → value of its only series.
fn values(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap().to_owned();
            (name, value.parse().unwrap())
        })
        .collect()
}

#[test]
fn every_filter_names_a_label_value_its_sources_can_take() {
    for field in FIELDS {
        assert!(field.name.starts_with("DCGM_FI_"), "{}", field.name);
        let Some((name, value)) = field.filter else {
            continue;
        };
        for source in field.sources {
            let label = source.labels.iter().find(|l| l.name == name);
            let label = label.unwrap_or_else(|| panic!("{} has no {name}", source.name));
            assert!(
                label.values.is_empty() || label.values.contains(&value),
                "{}: {name} is never {value}",
                source.name
            );
        }
    }
}

#[test]
fn the_compatibility_doc_maps_every_field_with_its_type_and_unit() {
    let doc = include_str!("../../../docs/dcgm-compatibility.md");
    for field in FIELDS {
        let start = format!("| `{}` |", field.name);
        let row = doc.lines().find(|l| l.starts_with(&start));
        let row = row.unwrap_or_else(|| panic!("docs/dcgm-compatibility.md lacks {}", field.name));
        let cells: Vec<&str> = row.split(" | ").collect();
        let kind = field.kind.name();
        assert!(
            cells[1].starts_with(kind),
            "{}: type {kind} in FIELDS",
            field.name
        );
        assert_eq!(cells[2], field.unit, "{}: unit", field.name);
    }
}
