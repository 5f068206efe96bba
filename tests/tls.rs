//! TLS and basic auth from the web config, against the real binary:
//! certificates made here with rcgen, a rustls client, a hand-made TLS 1.1
//! ClientHello, certificate rotation, an invalid reload, and a real
//! Prometheus scraping over TLS with basic auth.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    date_time_ymd,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use common::prometheus::Prometheus;
use common::{DoubleConfig, Driver, Exporter, Scrape, nvml_double, require_tool, wait_for};

/// A bcrypt hash at cost 6 (fast in a debug build; the same code path as cost 10).
fn hash(password: &str) -> String {
    bcrypt::hash(password, 6).unwrap()
}

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `sans`, as (certificate PEM, key PEM).
    fn issue(
        &self,
        sans: &[&str],
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> (String, String) {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.extended_key_usages = vec![usage];
        if expired {
            params.not_before = date_time_ymd(2001, 1, 1);
            params.not_after = date_time_ymd(2002, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A directory with a CA, a server certificate and a web config.
struct Setup {
    dir: PathBuf,
    ca: Ca,
    config: PathBuf,
}

impl Setup {
    fn new(test: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tls-{test}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Ca::new("test CA");
        std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
        let setup = Self {
            config: dir.join("web.yml"),
            dir,
            ca,
        };
        setup.rotate_server_certificate();
        setup
    }

    /// Writes a new server certificate and key (atomically, as a Secret
    /// volume swaps them); returns the certificate PEM.
    fn rotate_server_certificate(&self) -> String {
        let (cert, key) = self.ca.issue(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            false,
        );
        for (name, text) in [("tls.key", &key), ("tls.crt", &cert)] {
            let partial = self.dir.join(format!("{name}.partial"));
            std::fs::write(&partial, text).unwrap();
            std::fs::rename(&partial, self.dir.join(name)).unwrap();
        }
        cert
    }

    fn write_config(&self, text: &str) {
        let partial = self.config.with_extension("partial");
        std::fs::write(&partial, text).unwrap();
        std::fs::rename(&partial, &self.config).unwrap();
    }

    fn start(&self, extra: &[&str]) -> Exporter {
        let double = DoubleConfig::new(
            &format!("tls-{}", self.dir.file_name().unwrap().to_string_lossy()),
            "gpu_count = 2\n",
        );
        let library = format!("--nvml.library={}", nvml_double(Driver::Current).display());
        let flag = format!("--web.config.file={}", self.config.display());
        let mut args = vec![
            library.as_str(),
            "--collect.interval=200ms",
            "--no-collector.pods",
            flag.as_str(),
        ];
        args.extend(extra);
        Exporter::spawn(&args, Some(&double))
    }
}

struct Client {
    config: Arc<ClientConfig>,
}

impl Client {
    fn new(
        ca: &str,
        identity: Option<&(String, String)>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Self {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                builder.with_client_auth_cert(certs, key).unwrap()
            }
        };
        Self {
            config: Arc::new(config),
        }
    }

    fn default_versions(ca: &str, identity: Option<&(String, String)>) -> Self {
        Self::new(ca, identity, rustls::DEFAULT_VERSIONS)
    }

    /// One request on a new connection: the status, the response and the
    /// server's certificate; an error when the handshake fails.
    fn get(&self, port: u16, path: &str, headers: &str) -> std::io::Result<(u16, String, Vec<u8>)> {
        let tcp = TcpStream::connect(("127.0.0.1", port))?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let name = ServerName::try_from("localhost").unwrap();
        let connection = ClientConnection::new(self.config.clone(), name).unwrap();
        let mut tls = StreamOwned::new(connection, tcp);
        // One write, so that no TLS record waits for an ACK (Nagle).
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n");
        tls.write_all(request.as_bytes())?;
        let mut answer = Vec::new();
        // hyper closes without close_notify after `Connection: close`.
        if let Err(e) = tls.read_to_end(&mut answer)
            && answer.is_empty()
        {
            return Err(e);
        }
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no HTTP answer: {answer:?}")))?;
        let peer = tls.conn.peer_certificates().unwrap()[0].to_vec();
        Ok((status, answer, peer))
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {encoded}\r\n")
}

fn body(answer: &str) -> &str {
    answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default()
}

#[test]
fn client_certificates_are_verified_and_rotation_needs_no_restart() {
    let setup = Setup::new("client-certs");
    setup.write_config(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
         client_allowed_sans: [prometheus.test]\n",
    );
    let ca = setup.ca.pem();
    let good = setup.ca.issue(
        &["prometheus.test"],
        ExtendedKeyUsagePurpose::ClientAuth,
        false,
    );
    let client = Client::default_versions(&ca, Some(&good));
    let mut exporter = setup.start(&[]);
    exporter.wait_until_serving(|e| client.get(e.port, "/health", "").is_ok());

    let (status, answer, first_cert) = client.get(exporter.port, "/metrics", "").unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(Scrape::parse(body(&answer)).has("system_info_exporter_build_info"));

    // Refused: no certificate, another SAN, expired, from another CA.
    let refused = [
        ("no certificate", Client::default_versions(&ca, None)),
        (
            "SAN mismatch",
            Client::default_versions(
                &ca,
                Some(&setup.ca.issue(
                    &["intruder.test"],
                    ExtendedKeyUsagePurpose::ClientAuth,
                    false,
                )),
            ),
        ),
        (
            "expired",
            Client::default_versions(
                &ca,
                Some(&setup.ca.issue(
                    &["prometheus.test"],
                    ExtendedKeyUsagePurpose::ClientAuth,
                    true,
                )),
            ),
        ),
        (
            "untrusted",
            Client::default_versions(
                &ca,
                Some(&Ca::new("other CA").issue(
                    &["prometheus.test"],
                    ExtendedKeyUsagePurpose::ClientAuth,
                    false,
                )),
            ),
        ),
    ];
    for (what, client) in &refused {
        let result = client.get(exporter.port, "/metrics", "");
        assert!(result.is_err(), "{what}: {result:?}");
    }

    // Plain HTTP to the TLS port: no HTTP answer, the connection closes.
    let mut plain = TcpStream::connect(("127.0.0.1", exporter.port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));

    // Rotation: the next connections get the new certificate.
    let rotated = setup.rotate_server_certificate();
    let rotated_der = CertificateDer::from_pem_slice(rotated.as_bytes())
        .unwrap()
        .to_vec();
    assert_ne!(rotated_der, first_cert);
    wait_for("the rotated certificate", Duration::from_secs(10), || {
        let (_, _, cert) = client.get(exporter.port, "/health", "").ok()?;
        (cert == rotated_der).then_some(())
    });

    // An invalid change keeps the previous configuration and says so.
    setup.write_config("tls_server_config:\n  cert_file: tls.crt\n  key_file: missing.key\n");
    wait_for("the reload error", Duration::from_secs(10), || {
        exporter
            .log()
            .contains("invalid web config file, keeping the previous one")
            .then_some(())
    });
    let (status, answer, _) = client.get(exporter.port, "/metrics", "").unwrap();
    assert_eq!(status, 200);
    let s = Scrape::parse(body(&answer));
    assert_eq!(
        s.value(
            "system_info_exporter_web_config_last_reload_successful",
            &[]
        ),
        Some(0.0)
    );
    let failures = s
        .value(
            "system_info_exporter_http_tls_handshake_failures_total",
            &[],
        )
        .unwrap();
    assert!(failures >= 5.0, "{failures}");
    assert!(!exporter.log().contains("panicked"));
}

/// A TLS 1.1 ClientHello (no supported_versions extension), by hand: rustls
/// clients cannot speak TLS 1.1.
fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02]; // client_version TLS 1.1
    hello.extend([0u8; 32]); // random
    hello.push(0); // session id
    hello.extend([0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, RSA-AES128-SHA
    hello.extend([0x01, 0x00]); // compression: null
    let mut handshake = vec![0x01, 0x00, (hello.len() >> 8) as u8, hello.len() as u8];
    handshake.extend(hello);
    let mut record = vec![
        0x16,
        0x03,
        0x02,
        (handshake.len() >> 8) as u8,
        handshake.len() as u8,
    ];
    record.extend(handshake);
    record
}

#[test]
fn old_and_excluded_tls_versions_are_refused() {
    let setup = Setup::new("versions");
    setup.write_config(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  min_version: TLS13\n",
    );
    let ca = setup.ca.pem();
    let tls13 = Client::default_versions(&ca, None);
    let mut exporter = setup.start(&[]);
    exporter.wait_until_serving(|e| tls13.get(e.port, "/health", "").is_ok());

    let tls12 = Client::new(&ca, None, &[&rustls::version::TLS12]);
    assert!(tls12.get(exporter.port, "/health", "").is_err());

    let mut old = TcpStream::connect(("127.0.0.1", exporter.port)).unwrap();
    old.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    old.write_all(&tls11_client_hello()).unwrap();
    let mut answer = Vec::new();
    let _ = old.read_to_end(&mut answer);
    // An alert record (0x15) or nothing; never a ServerHello (0x16).
    assert!(answer.first().is_none_or(|b| *b == 0x15), "{answer:?}");
    assert_eq!(tls13.get(exporter.port, "/health", "").unwrap().0, 200);
}

#[test]
fn plain_http_to_the_tls_port_is_told_so_and_the_health_check_says_why() {
    let setup = Setup::new("plain-http");
    setup.write_config("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n");
    let client = Client::default_versions(&setup.ca.pem(), None);
    let mut exporter = setup.start(&[]);
    exporter.wait_until_serving(|e| client.get(e.port, "/health", "").is_ok());

    let mut plain = TcpStream::connect(("127.0.0.1", exporter.port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    plain.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.0 400 ")
            && answer.ends_with("Client sent an HTTP request to an HTTPS server.\n"),
        "{answer}"
    );

    let url = format!("http://127.0.0.1:{}/health", exporter.port);
    let check = std::process::Command::new(common::BIN)
        .args(["healthcheck", "--url", &url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("speaks TLS") && !stderr.contains("pass --url"),
        "{stderr}"
    );
    // TLS clients are unaffected.
    assert_eq!(client.get(exporter.port, "/health", "").unwrap().0, 200);
}

#[test]
fn basic_auth_answers_401_the_same_for_unknown_users_and_wrong_passwords() {
    let setup = Setup::new("basic-auth");
    setup.write_config(&format!(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n\
         basic_auth_users:\n  prometheus: '{}'\n\
         http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
        hash("secret")
    ));
    let client = Client::default_versions(&setup.ca.pem(), None);
    let mut exporter = setup.start(&["--web.probes-without-auth"]);
    exporter.wait_until_serving(|e| client.get(e.port, "/health", "").is_ok());

    let (status, answer, _) = client.get(exporter.port, "/health", "").unwrap();
    assert_eq!(
        status, 200,
        "/health is exempt with --web.probes-without-auth"
    );
    let (status, answer_401, _) = client.get(exporter.port, "/metrics", "").unwrap();
    assert_eq!(status, 401);
    assert!(
        answer_401.contains("www-authenticate: Basic realm=\"system-info-exporter\""),
        "{answer_401}"
    );
    assert!(answer.contains("x-frame-options: deny"), "{answer}");
    let ok = basic("prometheus", "secret");
    let (status, _, _) = client.get(exporter.port, "/metrics", &ok).unwrap();
    assert_eq!(status, 200);

    // Wrong password and unknown user, interleaved: same status, and
    // medians within noise of each other (both pay one bcrypt check; without
    // the decoy check an unknown user would pay none).
    let wrong = basic("prometheus", "wrong");
    let unknown = basic("nobody", "secret");
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..15 {
        for (i, header) in [&wrong, &unknown].iter().enumerate() {
            let started = Instant::now();
            let (status, _, _) = client.get(exporter.port, "/metrics", header).unwrap();
            times[i].push(started.elapsed());
            assert_eq!(status, 401);
        }
    }
    let median = |t: &mut Vec<Duration>| {
        t.sort();
        t[t.len() / 2].as_secs_f64()
    };
    let (wrong, unknown) = (median(&mut times[0]), median(&mut times[1]));
    eprintln!("401 medians: wrong password {wrong:.4}s, unknown user {unknown:.4}s");
    let ratio = wrong / unknown;
    assert!(
        (0.5..2.0).contains(&ratio),
        "wrong password {wrong:.4}s, unknown user {unknown:.4}s"
    );
    let (status, answer, _) = client.get(exporter.port, "/metrics", &ok).unwrap();
    assert_eq!(status, 200);
    let failures = Scrape::parse(body(&answer))
        .value("system_info_exporter_http_auth_failures_total", &[])
        .unwrap();
    assert!(failures >= 31.0, "{failures}");
}

#[test]
fn prometheus_scrapes_over_tls_with_basic_auth_and_gzip() {
    if !require_tool("prometheus", "apt-get install prometheus") {
        return;
    }
    let setup = Setup::new("prometheus");
    setup.write_config(&format!(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n\
         basic_auth_users:\n  prometheus: '{}'\n",
        hash("secret")
    ));
    let identity = setup.ca.issue(
        &["prometheus.test"],
        ExtendedKeyUsagePurpose::ClientAuth,
        false,
    );
    std::fs::write(setup.dir.join("client.crt"), &identity.0).unwrap();
    std::fs::write(setup.dir.join("client.key"), &identity.1).unwrap();
    let client = Client::default_versions(&setup.ca.pem(), Some(&identity));
    let mut exporter = setup.start(&[]);
    exporter.wait_until_serving(|e| client.get(e.port, "/health", "").is_ok());

    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sie\n    scheme: https\n    \
         basic_auth:\n      username: prometheus\n      password: secret\n    \
         tls_config:\n      ca_file: {dir}/ca.crt\n      cert_file: {dir}/client.crt\n      \
         key_file: {dir}/client.key\n      server_name: localhost\n    \
         static_configs:\n      - targets: [\"127.0.0.1:{exporter}\"]\n",
        dir = setup.dir.display(),
        exporter = exporter.port
    );
    let prometheus = Prometheus::start("tls", &config);
    let value = |query: &str| prometheus.value(query);
    let up = wait_for_value("up == 1", || value("up").filter(|v| *v == 1.0));
    let gpus = wait_for_value("GPU series", || value("nvidia_gpus"));
    // Prometheus asked for gzip, and got it.
    let gzip_bytes = wait_for_value("gzip bodies", || {
        value("system_info_exporter_http_metrics_response_bytes_total{encoding=\"gzip\"}")
            .filter(|v| *v > 0.0)
    });
    drop(prometheus);
    assert_eq!((up, gpus), (Some(1.0), Some(2.0)));
    assert!(gzip_bytes.is_some());
    assert_eq!(
        client
            .get(exporter.port, "/metrics", "")
            .map(|(status, _, _)| status)
            .unwrap(),
        401
    );
}

fn wait_for_value(what: &str, check: impl Fn() -> Option<f64>) -> Option<f64> {
    Some(wait_for(what, Duration::from_secs(60), check))
}

#[test]
fn the_deploy_example_web_config_is_valid() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/kubernetes/overlays/tls-basic-auth/web-config.yaml"
    );
    let secret: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let web = secret["stringData"]["web.yml"].as_str().unwrap();
    let config =
        system_info_exporter::testing::web_config::parse(web, Path::new("/etc/web")).unwrap();
    assert!(config.tls.is_some());
    // The example password the comment names.
    assert!(bcrypt::verify("change-me", &config.users["prometheus"]).unwrap());
}
