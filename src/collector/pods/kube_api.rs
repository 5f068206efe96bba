//! The one Kubernetes API request the exporter makes: this node's
//! ResourceSlices, to resolve DRA devices to GPU and MIG UUIDs. A plain GET
//! over the hyper and rustls the exporter already has (a Kubernetes client
//! crate would add dozens of crates and megabytes for one request), with
//! the pod's service-account token, re-read for every request so that a
//! rotated token is used at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::metrics::labels::KubeApiError;

/// The service account's files, as the kubelet mounts them.
pub(crate) const TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
pub(crate) const CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// The API versions that serve ResourceSlices, newest first: v1 from
/// Kubernetes 1.34 (the only one served by default there), the betas before.
const VERSIONS: [&str; 3] = ["v1", "v1beta2", "v1beta1"];

/// Items per page; a node's slices are a handful.
const PAGE: usize = 500;

/// A failed request: why, as the `reason` label, and the details.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiFailure {
    pub(crate) reason: KubeApiError,
    pub(crate) message: String,
}

impl ApiFailure {
    fn new(reason: KubeApiError, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// A device of a ResourceSlice, with the attributes the exporter reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SliceDevice {
    pub(crate) driver: String,
    pub(crate) pool: String,
    pub(crate) name: String,
    /// `uuid`: the GPU's, or the MIG device's.
    pub(crate) uuid: Option<String>,
    /// `parentUUID` and `profile` of a MIG device.
    pub(crate) parent_uuid: Option<String>,
    pub(crate) profile: Option<String>,
}

/// Where the API is and how to authenticate.
pub(crate) struct Client {
    base: Uri,
    token_file: PathBuf,
    /// The CA that signs the API server's certificate, for `https://`.
    tls: Option<tokio_rustls::TlsConnector>,
    timeout: Duration,
    /// The version that answered last, tried first next time.
    version: usize,
}

impl Client {
    /// A client of `url` (`https://` or, for tests and local proxies,
    /// `http://`). The CA file is read here: a bad one is an error now.
    pub(crate) fn new(
        url: &str,
        token_file: &Path,
        ca_file: &Path,
        timeout: Duration,
    ) -> Result<Self, String> {
        let base: Uri = url
            .parse()
            .map_err(|e| format!("--kubernetes.api-url {url:?} is not a URL: {e}"))?;
        let tls = match base.scheme_str() {
            Some("https") => Some(connector(ca_file)?),
            Some("http") => None,
            _ => {
                return Err(format!(
                    "--kubernetes.api-url {url:?}: use https:// (or http://)"
                ));
            }
        };
        if base.authority().is_none() {
            return Err(format!("--kubernetes.api-url {url:?} has no host"));
        }
        Ok(Self {
            base,
            token_file: token_file.to_owned(),
            tls,
            timeout,
            version: 0,
        })
    }

    pub(crate) fn url(&self) -> String {
        self.base.to_string()
    }

    /// The devices of `drivers` in the ResourceSlices of `node`.
    pub(crate) async fn node_devices(
        &mut self,
        node: &str,
        drivers: &[String],
    ) -> Result<Vec<SliceDevice>, ApiFailure> {
        let mut not_served = Vec::new();
        for attempt in 0..VERSIONS.len() {
            let version = (self.version + attempt) % VERSIONS.len();
            match self.list(VERSIONS[version], node).await {
                Ok(slices) => {
                    self.version = version;
                    return Ok(devices(slices, drivers));
                }
                Err(failure) if failure.reason == KubeApiError::NotServed => {
                    not_served.push(VERSIONS[version]);
                }
                Err(failure) => return Err(failure),
            }
        }
        Err(ApiFailure::new(
            KubeApiError::NotServed,
            format!(
                "the API server serves no ResourceSlices ({} not found): DRA is not enabled on this cluster",
                not_served.join(", ")
            ),
        ))
    }

    /// Every ResourceSlice of `node` in API version `version`, page by page.
    async fn list(&self, version: &str, node: &str) -> Result<Vec<Slice>, ApiFailure> {
        let mut slices = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("fieldSelector", &format!("spec.nodeName={node}"));
            query.append_pair("limit", &PAGE.to_string());
            if let Some(token) = &next {
                query.append_pair("continue", token);
            }
            let path = format!(
                "/apis/resource.k8s.io/{version}/resourceslices?{}",
                query.finish()
            );
            let page: SliceList = self.get(&path).await?;
            slices.extend(page.items);
            next = page.metadata.next.filter(|t| !t.is_empty());
            if next.is_none() {
                return Ok(slices);
            }
        }
    }

    /// GETs `path` and decodes its JSON.
    async fn get<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, ApiFailure> {
        let token = std::fs::read_to_string(&self.token_file).map_err(|e| {
            ApiFailure::new(
                KubeApiError::Unauthorized,
                format!("cannot read the token {}: {e}", self.token_file.display()),
            )
        })?;
        let request = async {
            let (status, body) = self.send(path, token.trim()).await?;
            match status {
                StatusCode::OK => serde_json::from_slice(&body).map_err(|e| {
                    ApiFailure::new(
                        KubeApiError::Other,
                        format!("the answer is not a ResourceSliceList: {e}"),
                    )
                }),
                status => Err(status_failure(status, &body)),
            }
        };
        tokio::time::timeout(self.timeout, request)
            .await
            .unwrap_or_else(|_| {
                Err(ApiFailure::new(
                    KubeApiError::Unreachable,
                    format!("no answer within {:?}", self.timeout),
                ))
            })
    }

    async fn send(&self, path: &str, token: &str) -> Result<(StatusCode, Bytes), ApiFailure> {
        let authority = self.base.authority().expect("checked in new");
        let host = authority.host().trim_matches(['[', ']']);
        let port = authority
            .port_u16()
            .unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| ApiFailure::new(KubeApiError::Unreachable, e.to_string()))?;
        let uri: Uri = format!("{}{path}", self.base.to_string().trim_end_matches('/'))
            .parse()
            .map_err(|e| ApiFailure::new(KubeApiError::Other, format!("{e}")))?;
        let request = Request::get(uri.path_and_query().expect("a path").as_str())
            .header("host", authority.as_str())
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| ApiFailure::new(KubeApiError::Other, e.to_string()))?;
        match &self.tls {
            None => exchange(stream, request).await,
            Some(connector) => {
                let name = ServerName::try_from(host.to_owned())
                    .map_err(|e| ApiFailure::new(KubeApiError::Tls, e.to_string()))?;
                let tls = connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| ApiFailure::new(KubeApiError::Tls, e.to_string()))?;
                exchange(tls, request).await
            }
        }
    }
}

/// Sends one request over `io` and reads the whole answer.
async fn exchange<I>(
    io: I,
    request: Request<Empty<Bytes>>,
) -> Result<(StatusCode, Bytes), ApiFailure>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let failed = |e: hyper::Error| ApiFailure::new(KubeApiError::Unreachable, e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(failed)?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(failed)?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(failed)?;
    Ok((status, body.to_bytes()))
}

/// A rustls connector that trusts the certificates in `ca_file`.
fn connector(ca_file: &Path) -> Result<tokio_rustls::TlsConnector, String> {
    let pem = std::fs::read(ca_file).map_err(|e| {
        format!(
            "cannot read the Kubernetes API's CA {} (--kubernetes.ca-file): {e}",
            ca_file.display()
        )
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.map_err(|e| format!("{}: not a PEM certificate: {e}", ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: an invalid certificate: {e}", ca_file.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// What a status other than 200 means; the API server's `Status` message
/// where it sent one.
fn status_failure(status: StatusCode, body: &[u8]) -> ApiFailure {
    #[derive(Deserialize)]
    struct Status {
        message: Option<String>,
    }
    let message = serde_json::from_slice::<Status>(body)
        .ok()
        .and_then(|s| s.message)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let reason = match status {
        StatusCode::UNAUTHORIZED => KubeApiError::Unauthorized,
        StatusCode::FORBIDDEN => KubeApiError::Forbidden,
        StatusCode::NOT_FOUND => KubeApiError::NotServed,
        _ => KubeApiError::Other,
    };
    ApiFailure::new(reason, format!("{status}: {message}"))
}

#[derive(Deserialize)]
struct SliceList {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Slice>,
}

#[derive(Default, Deserialize)]
struct ListMeta {
    #[serde(rename = "continue")]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Slice {
    spec: SliceSpec,
}

#[derive(Deserialize)]
struct SliceSpec {
    driver: String,
    pool: Pool,
    #[serde(default)]
    devices: Vec<Device>,
}

#[derive(Deserialize)]
struct Pool {
    name: String,
    #[serde(default)]
    generation: i64,
}

/// A device as v1 and v1beta2 serve it (`attributes`), or v1beta1
/// (`basic.attributes`).
#[derive(Deserialize)]
struct Device {
    name: String,
    #[serde(default)]
    attributes: HashMap<String, Attribute>,
    basic: Option<Basic>,
}

#[derive(Deserialize)]
struct Basic {
    #[serde(default)]
    attributes: HashMap<String, Attribute>,
}

/// One of `string`, `int`, `bool`, `version`; only strings are read.
#[derive(Deserialize)]
struct Attribute {
    string: Option<String>,
}

/// The devices of `drivers`, from each pool's newest generation only (a
/// pool being republished may briefly have slices of two).
fn devices(slices: Vec<Slice>, drivers: &[String]) -> Vec<SliceDevice> {
    let mut newest: HashMap<(String, String), i64> = HashMap::new();
    for slice in &slices {
        let pool = (slice.spec.driver.clone(), slice.spec.pool.name.clone());
        let generation = newest.entry(pool).or_insert(i64::MIN);
        *generation = (*generation).max(slice.spec.pool.generation);
    }
    let mut devices = Vec::new();
    for slice in slices {
        let spec = slice.spec;
        let pool = (spec.driver.clone(), spec.pool.name.clone());
        if !drivers.contains(&spec.driver) || newest[&pool] != spec.pool.generation {
            continue;
        }
        for device in spec.devices {
            let mut attributes = device.attributes;
            if let Some(basic) = device.basic {
                attributes.extend(basic.attributes);
            }
            // Attributes are named by the driver, with or without its domain.
            let attribute = |key: &str| {
                let qualified = format!("{}/{key}", spec.driver);
                attributes
                    .get(key)
                    .or_else(|| attributes.get(&qualified))
                    .and_then(|a| a.string.clone())
            };
            devices.push(SliceDevice {
                driver: spec.driver.clone(),
                pool: spec.pool.name.clone(),
                uuid: attribute("uuid"),
                parent_uuid: attribute("parentUUID"),
                profile: attribute("profile"),
                name: device.name,
            });
        }
    }
    devices
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Vec<SliceDevice> {
        let list: SliceList = serde_json::from_str(json).unwrap();
        devices(list.items, &["gpu.nvidia.com".to_owned()])
    }

    #[test]
    fn reads_v1_and_v1beta1_devices_of_the_newest_generation() {
        let v1 = r#"{"kind":"ResourceSliceList","metadata":{},"items":[
          {"spec":{"driver":"gpu.nvidia.com","pool":{"name":"node-a","generation":2},
            "devices":[{"name":"gpu-0","attributes":{"type":{"string":"gpu"},"uuid":{"string":"GPU-a"},"driverVersion":{"version":"580.1.2"}}},
                       {"name":"gpu-0-mig-1g10gb-19-0","attributes":{"uuid":{"string":"MIG-b"},"gpu.nvidia.com/parentUUID":{"string":"GPU-a"},"profile":{"string":"1g.10gb"}}}]}},
          {"spec":{"driver":"gpu.nvidia.com","pool":{"name":"node-a","generation":1},
            "devices":[{"name":"gpu-9","attributes":{"uuid":{"string":"GPU-old"}}}]}},
          {"spec":{"driver":"example.com","pool":{"name":"node-a","generation":1},
            "devices":[{"name":"fpga-0","attributes":{"uuid":{"string":"F"}}}]}}]}"#;
        let found = parse(v1);
        let names: Vec<_> = found.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["gpu-0", "gpu-0-mig-1g10gb-19-0"]);
        assert_eq!(found[1].parent_uuid.as_deref(), Some("GPU-a"));
        assert_eq!(found[1].profile.as_deref(), Some("1g.10gb"));

        let v1beta1 = r#"{"items":[{"spec":{"driver":"gpu.nvidia.com","pool":{"name":"n","generation":1},
            "devices":[{"name":"gpu-1","basic":{"attributes":{"uuid":{"string":"GPU-c"}}}}]}}]}"#;
        assert_eq!(parse(v1beta1)[0].uuid.as_deref(), Some("GPU-c"));
    }

    #[test]
    fn statuses_name_their_reason() {
        let forbidden = br#"{"kind":"Status","message":"resourceslices.resource.k8s.io is forbidden: User \"x\" cannot list","reason":"Forbidden","code":403}"#;
        let failure = status_failure(StatusCode::FORBIDDEN, forbidden);
        assert_eq!(failure.reason, KubeApiError::Forbidden);
        assert!(
            failure.message.contains("cannot list"),
            "{}",
            failure.message
        );
        let failure = status_failure(StatusCode::NOT_FOUND, b"404 page not found\n");
        assert_eq!(failure.reason, KubeApiError::NotServed);
        assert!(failure.message.ends_with("404 page not found"));
    }
}
