//! The web configuration file of `--web.config.file`, in the format of the
//! Prometheus exporter-toolkit (the file operators already have for
//! node_exporter): `tls_server_config`, `http_server_config` and
//! `basic_auth_users`. Parsing is strict like exporter-toolkit's: an unknown
//! key or a value rustls cannot honour is an error naming it, never ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with tls_server_config, http_server_config or basic_auth_users"
)]
struct FileFormat {
    tls_server_config: Option<TlsFormat>,
    http_server_config: Option<HttpFormat>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of TLS settings (cert_file, key_file, client_auth_type, ...)"
)]
struct TlsFormat {
    cert_file: Option<String>,
    key_file: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with http2 or headers")]
struct HttpFormat {
    /// Accepted for compatibility and ignored: the exporter serves HTTP/1.1 only.
    #[serde(rename = "http2")]
    _http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// A PEM source: a file (re-read when it changes) or text in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pem {
    File(PathBuf),
    Inline(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

const CLIENT_AUTH_TYPES: &[(&str, ClientAuth)] = &[
    ("NoClientCert", ClientAuth::NoClientCert),
    ("RequestClientCert", ClientAuth::RequestClientCert),
    ("RequireAnyClientCert", ClientAuth::RequireAnyClientCert),
    (
        "VerifyClientCertIfGiven",
        ClientAuth::VerifyClientCertIfGiven,
    ),
    (
        "RequireAndVerifyClientCert",
        ClientAuth::RequireAndVerifyClientCert,
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// Go's names (crypto/tls) of the TLS 1.2 suites rustls offers with ring.
/// TLS 1.3 suites are not configurable, as in Go.
const CIPHER_SUITES: &[(&str, rustls::CipherSuite)] = {
    use rustls::CipherSuite as C;
    &[
        (
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ]
};

/// Go's names of the TLS 1.3 suites.
const TLS13_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Go's curve names and the key-exchange groups rustls offers with ring.
const CURVES: &[(&str, rustls::NamedGroup)] = &[
    ("X25519", rustls::NamedGroup::X25519),
    ("CurveP256", rustls::NamedGroup::secp256r1),
    ("CurveP384", rustls::NamedGroup::secp384r1),
];

/// What is allowed in `http_server_config.headers`, as in exporter-toolkit.
const HEADERS: &[&str] = &[
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: Pem,
    pub key: Pem,
    pub client_auth: ClientAuth,
    pub client_ca: Option<PathBuf>,
    /// DNS names and IP addresses, one of which a client certificate must hold.
    pub client_allowed_sans: Vec<String>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// TLS 1.2 suites in order of preference; `None`: rustls's defaults.
    pub cipher_suites: Option<Vec<rustls::CipherSuite>>,
    pub curves: Option<Vec<rustls::NamedGroup>>,
    pub prefer_server_cipher_suites: bool,
}

/// A validated web configuration; files it names are read when it is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    /// User name to bcrypt hash.
    pub users: BTreeMap<String, String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl WebConfig {
    /// The files whose change means the configuration must be read again.
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Some(tls) = &self.tls {
            for pem in [&tls.cert, &tls.key] {
                if let Pem::File(path) = pem {
                    files.push(path.clone());
                }
            }
            files.extend(tls.client_ca.clone());
        }
        files
    }
}

/// Reads and validates the file at `path`.
pub(crate) fn read(path: &Path) -> Result<WebConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base)
}

/// Parses a web configuration; relative paths are relative to `base`, the
/// file's directory.
pub fn parse(text: &str, base: &Path) -> Result<WebConfig, String> {
    let format: FileFormat = if text.trim().is_empty() {
        FileFormat::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?
    };
    let tls = match format.tls_server_config {
        Some(tls) => tls_settings(tls, base).map_err(|e| format!("tls_server_config: {e}"))?,
        None => None,
    };
    let mut users = BTreeMap::new();
    for (user, hash) in format.basic_auth_users.unwrap_or_default() {
        if user.contains(':') {
            return Err(format!(
                "basic_auth_users: the user name {user:?} contains ':', which basic auth cannot send"
            ));
        }
        bcrypt_cost(&hash).map_err(|e| {
            format!("basic_auth_users: {user}: not a bcrypt hash ({e}); make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`")
        })?;
        users.insert(user, hash);
    }
    let mut headers = Vec::new();
    let http = format.http_server_config.unwrap_or_default();
    for (name, value) in http.headers.unwrap_or_default() {
        headers
            .push(header(&name, &value).map_err(|e| format!("http_server_config.headers: {e}"))?);
    }
    Ok(WebConfig {
        tls,
        users,
        headers,
    })
}

/// The cost of a bcrypt hash, or why it is not one.
pub(crate) fn bcrypt_cost(hash: &str) -> Result<u32, String> {
    let parts: bcrypt::HashParts = hash
        .parse()
        .map_err(|e: bcrypt::BcryptError| e.to_string())?;
    Ok(parts.get_cost())
}

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let Some(allowed) = HEADERS.iter().find(|h| h.eq_ignore_ascii_case(name)) else {
        return Err(format!(
            "{name} cannot be set; allowed headers: {}",
            HEADERS.join(", ")
        ));
    };
    match *allowed {
        "X-Content-Type-Options" if !value.eq_ignore_ascii_case("nosniff") => {
            return Err(format!(
                "{allowed}: {value:?} is invalid; the only value is nosniff"
            ));
        }
        "X-Frame-Options"
            if !value.eq_ignore_ascii_case("deny") && !value.eq_ignore_ascii_case("sameorigin") =>
        {
            return Err(format!(
                "{allowed}: {value:?} is invalid; use deny or sameorigin"
            ));
        }
        _ => {}
    }
    let value = HeaderValue::from_str(value)
        .map_err(|_| format!("{allowed}: {value:?} is not a valid header value"))?;
    Ok((HeaderName::from_static(lowercase(allowed)), value))
}

fn lowercase(name: &str) -> &'static str {
    match name {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

fn tls_settings(tls: TlsFormat, base: &Path) -> Result<Option<TlsSettings>, String> {
    let file = |name: &Option<String>| name.as_ref().map(|n| base.join(n));
    let cert = pem(file(&tls.cert_file), tls.cert, "cert")?;
    let key = pem(file(&tls.key_file), tls.key, "key")?;
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        // As in exporter-toolkit: an empty section serves plain HTTP.
        (None, None) if tls.client_auth_type.is_none() && tls.client_ca_file.is_none() => {
            return Ok(None);
        }
        (None, _) => return Err("cert_file is missing".to_owned()),
        (_, None) => return Err("key_file is missing".to_owned()),
    };
    let client_auth = client_auth(tls.client_auth_type.as_deref())?;
    let client_ca = file(&tls.client_ca_file);
    check_client_ca(client_auth, client_ca.is_some())?;
    let client_allowed_sans = tls.client_allowed_sans.unwrap_or_default();
    check_allowed_sans(&client_allowed_sans, client_auth)?;
    let min_version =
        version(tls.min_version.as_deref(), "min_version")?.unwrap_or(TlsVersion::Tls12);
    let max_version =
        version(tls.max_version.as_deref(), "max_version")?.unwrap_or(TlsVersion::Tls13);
    if min_version > max_version {
        return Err("min_version is above max_version".to_owned());
    }
    Ok(Some(TlsSettings {
        cert,
        key,
        client_auth,
        client_ca,
        client_allowed_sans,
        min_version,
        max_version,
        cipher_suites: tls12_suites(tls.cipher_suites)?,
        curves: named_list(tls.curve_preferences, "curve_preferences", curve)?,
        prefer_server_cipher_suites: tls.prefer_server_cipher_suites.unwrap_or(true),
    }))
}

/// A PEM given as `<what>_file` (a path) or `<what>` (the text), not both.
fn pem(file: Option<PathBuf>, text: Option<String>, what: &str) -> Result<Option<Pem>, String> {
    match (file, text) {
        (Some(_), Some(_)) => Err(format!("set {what}_file or {what}, not both")),
        (Some(path), None) => Ok(Some(Pem::File(path))),
        (None, Some(text)) => Ok(Some(Pem::Inline(text))),
        (None, None) => Ok(None),
    }
}

fn client_auth(name: Option<&str>) -> Result<ClientAuth, String> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(ClientAuth::NoClientCert);
    };
    CLIENT_AUTH_TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, auth)| *auth)
        .ok_or_else(|| {
            let names: Vec<&str> = CLIENT_AUTH_TYPES.iter().map(|(n, _)| *n).collect();
            format!(
                "client_auth_type {name:?} is unknown; use one of {}",
                names.join(", ")
            )
        })
}

/// A client CA goes with, and only with, a type that verifies client certificates.
fn check_client_ca(client_auth: ClientAuth, has_ca: bool) -> Result<(), String> {
    let verifies = matches!(
        client_auth,
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
    );
    if verifies && !has_ca {
        return Err(format!(
            "client_auth_type {client_auth:?} needs client_ca_file, the CA that signs client certificates"
        ));
    }
    if !verifies && has_ca {
        return Err(format!(
            "client_ca_file is set but client_auth_type {client_auth:?} does not verify client certificates; use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        ));
    }
    Ok(())
}

fn check_allowed_sans(sans: &[String], client_auth: ClientAuth) -> Result<(), String> {
    if !sans.is_empty() && client_auth != ClientAuth::RequireAndVerifyClientCert {
        return Err(
            "client_allowed_sans needs client_auth_type RequireAndVerifyClientCert".to_owned(),
        );
    }
    for san in sans {
        if rustls_pki_types::ServerName::try_from(san.as_str()).is_err() {
            return Err(format!(
                "client_allowed_sans: {san:?} is neither a DNS name nor an IP address (the only SAN types checked)"
            ));
        }
    }
    Ok(())
}

/// A list of names, each looked up by `lookup`; `None` when not given, and
/// an error when given empty.
fn named_list<T>(
    names: Option<Vec<String>>,
    key: &str,
    lookup: fn(&str) -> Result<T, String>,
) -> Result<Option<Vec<T>>, String> {
    let Some(names) = names else {
        return Ok(None);
    };
    if names.is_empty() {
        return Err(format!("{key} is empty; leave it out for the defaults"));
    }
    names
        .iter()
        .map(|n| lookup(n))
        .collect::<Result<_, _>>()
        .map(Some)
}

fn version(name: Option<&str>, key: &str) -> Result<Option<TlsVersion>, String> {
    match name {
        None | Some("") => Ok(None),
        Some("TLS12") => Ok(Some(TlsVersion::Tls12)),
        Some("TLS13") => Ok(Some(TlsVersion::Tls13)),
        Some(v @ ("TLS10" | "TLS11")) => Err(format!(
            "{key} {v} is not supported: rustls speaks only TLS12 and TLS13"
        )),
        Some(v) => Err(format!("{key} {v:?} is unknown; use TLS12 or TLS13")),
    }
}

/// A TLS 1.2 suite by Go's name; `None` for a TLS 1.3 suite, which Go's
/// crypto/tls (exporter-toolkit's) accepts in the list and ignores, as TLS
/// 1.3 suites are not configurable.
fn cipher_suite(name: &str) -> Result<Option<rustls::CipherSuite>, String> {
    if TLS13_SUITES.contains(&name) {
        return Ok(None);
    }
    CIPHER_SUITES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| Some(*s))
        .ok_or_else(|| {
            let names: Vec<&str> = CIPHER_SUITES.iter().map(|(n, _)| *n).collect();
            format!(
                "cipher suite {name:?} is not supported: for TLS 1.2 rustls offers ECDHE suites with AES-GCM or ChaCha20-Poly1305 only; use some of {}",
                names.join(", ")
            )
        })
}

/// The TLS 1.2 suites of `cipher_suites`, TLS 1.3 names left out.
fn tls12_suites(names: Option<Vec<String>>) -> Result<Option<Vec<rustls::CipherSuite>>, String> {
    let Some(suites) = named_list(names, "cipher_suites", cipher_suite)? else {
        return Ok(None);
    };
    let tls12: Vec<_> = suites.into_iter().flatten().collect();
    if tls12.is_empty() {
        return Err("cipher_suites lists only TLS 1.3 suites, which are not configurable (as in Go); list TLS 1.2 suites too, or leave it out".to_owned());
    }
    Ok(Some(tls12))
}

fn curve(name: &str) -> Result<rustls::NamedGroup, String> {
    CURVES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, g)| *g)
        .ok_or_else(|| {
            let names: Vec<&str> = CURVES.iter().map(|(n, _)| *n).collect();
            format!(
                "curve {name:?} is not supported; use some of {}",
                names.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

    fn parse_ok(text: &str) -> WebConfig {
        parse(text, Path::new("/etc/exporter")).unwrap()
    }

    fn parse_err(text: &str) -> String {
        parse(text, Path::new("/etc/exporter")).unwrap_err()
    }

    #[test]
    fn reads_the_exporter_toolkit_format() {
        let config = parse_ok(&format!(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: /abs/tls.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             client_allowed_sans: [prometheus.example, 10.0.0.1]\n  min_version: TLS13\n  \
             cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n  curve_preferences: [X25519]\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  prometheus: '{HASH}'\n"
        ));
        let tls = config.tls.as_ref().unwrap();
        assert_eq!(tls.cert, Pem::File("/etc/exporter/tls.crt".into()));
        assert_eq!(tls.key, Pem::File("/abs/tls.key".into()));
        assert_eq!(tls.client_ca, Some("/etc/exporter/ca.crt".into()));
        assert_eq!(tls.min_version, TlsVersion::Tls13);
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(config.users["prometheus"], HASH);
        assert_eq!(config.headers[0].0, "x-frame-options");
        assert_eq!(config.files().len(), 3);
    }

    #[test]
    fn tls13_suite_names_are_accepted_and_ignored_as_in_go() {
        let config = parse_ok(
            "tls_server_config: {cert_file: a, key_file: b, cipher_suites: [TLS_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]}\n",
        );
        let suites = config.tls.unwrap().cipher_suites.unwrap();
        assert_eq!(
            suites,
            [rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
        );
    }

    #[test]
    fn an_empty_file_or_tls_section_serves_plain_http() {
        assert_eq!(parse_ok(""), WebConfig::default());
        assert_eq!(parse_ok("tls_server_config: {}\n").tls, None);
    }

    #[test]
    fn rejects_what_it_cannot_honour() {
        for (text, expected) in [
            ("tls_server_confg: {}\n", "unknown field `tls_server_confg`"),
            (
                "tls_server_config:\n  cert_file: a\n  keyfile: b\n",
                "unknown field `keyfile`",
            ),
            (
                "tls_server_config:\n  cert_file: a\n",
                "key_file is missing",
            ),
            (
                "tls_server_config: {cert_file: a, key_file: b, min_version: TLS11}\n",
                "TLS12 and TLS13",
            ),
            (
                "tls_server_config: {cert_file: a, key_file: b, max_version: TLS14}\n",
                "unknown",
            ),
            (
                "tls_server_config: {cert_file: a, key_file: b, min_version: TLS13, max_version: TLS12}\n",
                "above",
            ),
            (
                "tls_server_config: {cert_file: a, key_file: b, client_auth_type: Sometimes}\n",
                "RequireAndVerifyClientCert",
            ),
            (
                "tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAndVerifyClientCert}\n",
                "needs client_ca_file",
            ),
            (
                "tls_server_config: {cert_file: a, key_file: b, client_ca_file: c}\n",
                "does not verify",
            ),
            (
                "tls_server_config: {cert_file: a, key_file: b, cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]}\n",
                "not supported",
            ),
            (
                "tls_server_config: {cert_file: a, key_file: b, curve_preferences: [CurveP521]}\n",
                "not supported",
            ),
            (
                "tls_server_config: {cert_file: a, key_file: b, client_allowed_sans: [x]}\n",
                "RequireAndVerifyClientCert",
            ),
            (
                "http_server_config:\n  headers:\n    Server: me\n",
                "cannot be set",
            ),
            (
                "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
                "nosniff",
            ),
            ("basic_auth_users:\n  alice: secret\n", "not a bcrypt hash"),
            ("tls_server_config: [\n", "a mapping of TLS settings"),
            (
                "tls_server_config: {cert_file: a, key_file: b, cipher_suites: [TLS_AES_128_GCM_SHA256]}\n",
                "only TLS 1.3 suites",
            ),
            ("basic_auth_users: [alice]\n", "invalid type"),
        ] {
            let error = parse_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
