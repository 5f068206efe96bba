//! A fake Kubernetes API server: this node's ResourceSlices of the NVIDIA
//! DRA driver, in the v1 or the v1beta1 shape, or 403. It checks the
//! bearer token against the token file for every request and counts the
//! requests.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the fake answers.
#[derive(Clone)]
pub enum Serves {
    /// `resource.k8s.io/v1` (404 for the other versions).
    V1(Vec<Device>),
    /// `resource.k8s.io/v1beta1` only, attributes under `basic`.
    V1beta1(Vec<Device>),
    /// 403 with the API server's Status.
    Forbidden,
}

/// A device of the driver's slice: its name and UUID, and for a MIG device
/// its parent's UUID and profile.
#[derive(Clone)]
pub struct Device {
    pub name: &'static str,
    pub uuid: &'static str,
    pub mig: Option<(&'static str, &'static str)>,
}

pub struct FakeApi {
    pub url: String,
    serves: Arc<Mutex<Serves>>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FakeApi {
    /// Serves the slices of `node`, accepting the token in `token_file`.
    pub fn start(node: &str, token_file: &Path, serves: Serves) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let serves = Arc::new(Mutex::new(serves));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let state = (serves.clone(), requests.clone(), stop.clone());
        let (node, token_file) = (node.to_owned(), token_file.to_owned());
        std::thread::spawn(move || {
            let (serves, requests, stop) = state;
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let serves = serves.lock().unwrap().clone();
                        answer(stream, &node, &token_file, &serves, &requests);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            url,
            serves,
            requests,
            stop,
        }
    }

    pub fn set(&self, serves: Serves) {
        *self.serves.lock().unwrap() = serves;
    }

    /// ResourceSlice requests received, answered or not.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A token file for `test` holding `token`.
pub fn token_file(test: &str, token: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{test}.token"));
    std::fs::write(&path, token).unwrap();
    path
}

fn answer(
    stream: TcpStream,
    node: &str,
    token_file: &Path,
    serves: &Serves,
    requests: &AtomicUsize,
) {
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut authorization = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("authorization: ") {
            authorization = value.trim().to_owned();
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or_default();
    let token = std::fs::read_to_string(token_file).unwrap_or_default();
    let (status, body) = if !path.contains("/resourceslices") {
        (404, "404 page not found\n".to_owned())
    } else if authorization != format!("bearer {}", token.trim().to_ascii_lowercase()) {
        requests.fetch_add(1, Ordering::Relaxed);
        (401, status_json(401, "Unauthorized", "Unauthorized"))
    } else {
        requests.fetch_add(1, Ordering::Relaxed);
        assert!(
            path.contains(&format!("fieldSelector=spec.nodeName%3D{node}")),
            "only this node's slices: {path}"
        );
        slices(path, node, serves)
    };
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        _ => "Not Found",
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn slices(path: &str, node: &str, serves: &Serves) -> (u16, String) {
    let device = |d: &Device, nested: bool| {
        let mut attributes = serde_json::json!({
            "type": {"string": if d.mig.is_some() { "mig" } else { "gpu" }},
            "uuid": {"string": d.uuid},
            "driverVersion": {"version": "580.95.5"},
        });
        if let Some((parent, profile)) = d.mig {
            attributes["parentUUID"] = serde_json::json!({"string": parent});
            attributes["profile"] = serde_json::json!({"string": profile});
        }
        match nested {
            false => serde_json::json!({"name": d.name, "attributes": attributes}),
            true => serde_json::json!({"name": d.name, "basic": {"attributes": attributes}}),
        }
    };
    let list = |version: &str, devices: &[Device], nested: bool| {
        let devices: Vec<_> = devices.iter().map(|d| device(d, nested)).collect();
        serde_json::json!({
            "kind": "ResourceSliceList",
            "apiVersion": format!("resource.k8s.io/{version}"),
            "metadata": {"resourceVersion": "7"},
            "items": [{
                "metadata": {"name": format!("{node}-gpu.nvidia.com-x7k2p")},
                "spec": {
                    "driver": "gpu.nvidia.com",
                    "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                    "nodeName": node,
                    "devices": devices,
                }
            }]
        })
        .to_string()
    };
    match serves {
        Serves::Forbidden => (
            403,
            status_json(
                403,
                "Forbidden",
                "resourceslices.resource.k8s.io is forbidden: User \\\"system:serviceaccount:monitoring:system-info-exporter\\\" cannot list resource \\\"resourceslices\\\" in API group \\\"resource.k8s.io\\\" at the cluster scope",
            ),
        ),
        Serves::V1(devices) if path.starts_with("/apis/resource.k8s.io/v1/") => {
            (200, list("v1", devices, false))
        }
        Serves::V1beta1(devices) if path.starts_with("/apis/resource.k8s.io/v1beta1/") => {
            (200, list("v1beta1", devices, true))
        }
        _ => (404, "404 page not found\n".to_owned()),
    }
}

fn status_json(code: u16, reason: &str, message: &str) -> String {
    format!(
        "{{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{{}},\"status\":\"Failure\",\"message\":\"{message}\",\"reason\":\"{reason}\",\"code\":{code}}}"
    )
}
