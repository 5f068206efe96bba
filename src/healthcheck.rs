//! `system-info-exporter healthcheck`: a tiny HTTP client so that container
//! images need no curl for their HEALTHCHECK.
//!
//! A HEALTHCHECK is a separate process started in the container, so it does
//! not see the flags the exporter was started with: `docker run IMAGE
//! --web.listen-address=0.0.0.0:9400` would otherwise be probed on 8080 and
//! marked unhealthy. It therefore reads the address from the running
//! exporter's command line and environment in `/proc`, unless told otherwise
//! (see [`resolve`] for the order).

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use axum::http::{Request, StatusCode, Uri};
use clap::FromArgMatches;
use clap::parser::ValueSource;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::{self, Cli, Command};
use crate::http::ListenAddress;

const TIMEOUT: Duration = Duration::from_secs(5);
/// What to say when the listener speaks TLS, which the health check does not.
const TLS_LISTENER: &str = "the listener speaks TLS (tls_server_config in --web.config.file) and the health check plain HTTP only; check it with an HTTPS probe instead (e.g. the Kubernetes probe with scheme: HTTPS)";
const LISTEN_ID: &str = "listen_address";
const LISTEN_ENV: &str = "SIE_WEB_LISTEN_ADDRESS";

/// The URL of `/health` on the local listener: a wildcard listen address is
/// reached through loopback.
pub(crate) fn default_url(listen: &ListenAddress) -> String {
    format!("http://{}/health", listen.local_url_host())
}

/// What the health check itself was given.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Own {
    /// `--url`.
    pub(crate) url: Option<String>,
    /// The listen address as clap resolved it for this process.
    pub(crate) listen: ListenAddress,
    /// Where clap took `listen` from: the command line, the variable or the default.
    pub(crate) source: Option<ValueSource>,
}

/// The running exporter, as read from `/proc/PID`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exporter {
    pub(crate) pid: u32,
    /// `--web.listen-address` on its command line.
    pub(crate) flag: Option<ListenAddress>,
    /// `SIE_WEB_LISTEN_ADDRESS` in its environment.
    pub(crate) env: Option<ListenAddress>,
}

/// The URL to check and, for the error message, why that one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) why: String,
    /// Whether `--url` named it (then another URL is no advice to give).
    pub(crate) named: bool,
}

/// Chooses the URL, first match wins:
/// 1. `--url`;
/// 2. `--web.listen-address` on the health check's own command line;
/// 3. `SIE_WEB_LISTEN_ADDRESS` set for the health check but not, or
///    differently, for the exporter (in a container both inherit the
///    container's variables, so an equal value is no override);
/// 4. the exporter's `--web.listen-address`, then its `SIE_WEB_LISTEN_ADDRESS`
///    (the exporter's own order);
/// 5. the default, from clap.
fn resolve(own: &Own, exporter: &Result<Exporter, String>) -> Target {
    let target = |listen: &ListenAddress, why: String| Target {
        url: default_url(listen),
        why,
        named: false,
    };
    if let Some(url) = &own.url {
        return Target {
            url: url.clone(),
            why: "--url".into(),
            named: true,
        };
    }
    match own.source {
        Some(ValueSource::CommandLine) => {
            return target(
                &own.listen,
                "--web.listen-address of the health check".into(),
            );
        }
        Some(ValueSource::EnvVariable)
            if exporter
                .as_ref()
                .map_or(true, |e| e.env.as_ref() != Some(&own.listen)) =>
        {
            return target(&own.listen, format!("{LISTEN_ENV} of the health check"));
        }
        _ => {}
    }
    match exporter {
        Ok(Exporter {
            pid,
            flag: Some(listen),
            ..
        }) => target(
            listen,
            format!("--web.listen-address of the exporter, pid {pid}"),
        ),
        Ok(Exporter {
            pid,
            env: Some(listen),
            ..
        }) => target(listen, format!("{LISTEN_ENV} of the exporter, pid {pid}")),
        Ok(Exporter { pid, .. }) => target(
            &own.listen,
            format!("the default: the exporter, pid {pid}, was given no address"),
        ),
        Err(reason) => target(&own.listen, format!("the default: {reason}")),
    }
}

/// Runs the health check; `url` is `--url`.
pub(crate) fn main(url: Option<String>) -> ExitCode {
    // Parsed again for the value source, which the derived `Cli` drops.
    let matches = config::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let own = Own {
        url,
        listen: cli.options.listen_address,
        source: matches.value_source(LISTEN_ID),
    };
    let exporter = if own.url.is_none() {
        find_exporter(Path::new("/proc"))
    } else {
        Err("not looked up".into())
    };
    run(&resolve(&own, &exporter))
}

/// Finds the exporter this health check belongs to: a process running the
/// same executable file (same device and inode, which holds across chroots
/// and PID namespaces) that serves rather than checks. PID 1, the container's
/// main process, wins; otherwise there must be exactly one, or several that
/// agree on the address.
fn find_exporter(proc: &Path) -> Result<Exporter, String> {
    let me = fs::metadata(proc.join("self/exe"))
        .map_err(|e| format!("cannot read {}/self/exe: {e}", proc.display()))?;
    let own_pid = std::process::id();
    let mut found = Vec::new();
    let entries = fs::read_dir(proc).map_err(|e| format!("cannot list {}: {e}", proc.display()))?;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        // Other users' processes fail here (permission denied): not ours.
        let Ok(exe) = fs::metadata(dir.join("exe")) else {
            continue;
        };
        if pid == own_pid || (exe.dev(), exe.ino()) != (me.dev(), me.ino()) {
            continue;
        }
        let Ok(cmdline) = fs::read(dir.join("cmdline")) else {
            continue;
        };
        let Some(flag) = served_address(&split_nul(&cmdline)) else {
            continue;
        };
        let env = fs::read(dir.join("environ"))
            .ok()
            .and_then(|environ| listen_env(&environ));
        found.push(Exporter { pid, flag, env });
    }
    pick(found)
}

fn pick(mut found: Vec<Exporter>) -> Result<Exporter, String> {
    found.sort_by_key(|e| e.pid);
    match found.as_slice() {
        [] => Err("no running exporter found in /proc".into()),
        [first, ..] if first.pid == 1 => Ok(first.clone()),
        [first, rest @ ..]
            if rest
                .iter()
                .all(|e| (&e.flag, &e.env) == (&first.flag, &first.env)) =>
        {
            Ok(first.clone())
        }
        many => Err(format!(
            "{} exporters with different addresses are running (pids {}); pass --url",
            many.len(),
            many.iter()
                .map(|e| e.pid.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `None` when `argv` is not a serving exporter (another health check, or
/// arguments it would not start with); otherwise its `--web.listen-address`
/// if the command line has one.
fn served_address(argv: &[OsString]) -> Option<Option<ListenAddress>> {
    let matches = config::command().try_get_matches_from(argv).ok()?;
    let cli = Cli::from_arg_matches(&matches).ok()?;
    if matches!(cli.command, Some(Command::Healthcheck { .. })) {
        return None;
    }
    Some(
        (matches.value_source(LISTEN_ID) == Some(ValueSource::CommandLine))
            .then_some(cli.options.listen_address),
    )
}

fn split_nul(bytes: &[u8]) -> Vec<OsString> {
    let mut parts: Vec<OsString> = bytes
        .split(|&b| b == 0)
        .map(|part| OsString::from_vec(part.to_vec()))
        .collect();
    // /proc/PID/cmdline and environ end every entry with a NUL.
    if bytes.last() == Some(&0) {
        parts.pop();
    }
    parts
}

fn listen_env(environ: &[u8]) -> Option<ListenAddress> {
    split_nul(environ).iter().find_map(|entry| {
        let value = entry
            .to_str()?
            .strip_prefix(LISTEN_ENV)?
            .strip_prefix('=')?;
        ListenAddress::parse(value).ok()
    })
}

fn run(target: &Target) -> ExitCode {
    let url = &target.url;
    let why = &target.why;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("healthcheck: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(async { tokio::time::timeout(TIMEOUT, get(url)).await }) {
        Ok(Ok((StatusCode::OK, body))) => {
            // Docker keeps this output in the container's health log.
            eprintln!("healthcheck: {url} ({why}): healthy");
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok(Ok((status, body))) if body.contains("HTTPS server") => {
            eprintln!("healthcheck: {url} ({why}) answered {status}: {TLS_LISTENER}");
            ExitCode::FAILURE
        }
        Ok(Ok((status, body))) => {
            eprintln!("healthcheck: {url} ({why}) answered {status}: {body}");
            ExitCode::FAILURE
        }
        Ok(Err(error)) if error.to_string().contains("invalid HTTP") => {
            eprintln!("healthcheck: {url} ({why}) did not answer in HTTP: {TLS_LISTENER}");
            ExitCode::FAILURE
        }
        Ok(Err(error)) => {
            let advice = if target.named {
                ""
            } else {
                "; pass --url to check another address"
            };
            eprintln!("healthcheck: {url} ({why}): {error}{advice}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("healthcheck: {url} ({why}) did not answer within {TIMEOUT:?}");
            ExitCode::FAILURE
        }
    }
}

async fn get(url: &str) -> Result<(StatusCode, String), Box<dyn std::error::Error + Send + Sync>> {
    let uri: Uri = url.parse()?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// URLs are supported".into());
    }
    let authority = uri.authority().ok_or("the URL has no host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((authority.host().trim_matches(['[', ']']), port)).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::get(uri)
        .header("host", authority.as_str())
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).trim_end().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> ListenAddress {
        ListenAddress::parse(s).unwrap()
    }

    fn own(source: Option<ValueSource>, listen: &str) -> Own {
        Own {
            url: None,
            listen: addr(listen),
            source,
        }
    }

    fn exporter(flag: Option<&str>, env: Option<&str>) -> Result<Exporter, String> {
        Ok(Exporter {
            pid: 1,
            flag: flag.map(addr),
            env: env.map(addr),
        })
    }

    #[test]
    fn follows_the_exporters_command_line() {
        // docker run IMAGE --web.listen-address=0.0.0.0:9400
        let t = resolve(
            &own(Some(ValueSource::DefaultValue), "0.0.0.0:8080"),
            &exporter(Some("0.0.0.0:9400"), None),
        );
        assert_eq!(t.url, "http://127.0.0.1:9400/health");
        assert!(t.why.contains("of the exporter"), "{}", t.why);
    }

    #[test]
    fn the_exporters_flag_beats_the_shared_variable() {
        // docker run -e SIE_WEB_LISTEN_ADDRESS=0.0.0.0:9000 IMAGE --web.listen-address=0.0.0.0:9400:
        // the exporter listens on 9400 (flags beat variables), and so the check.
        let t = resolve(
            &own(Some(ValueSource::EnvVariable), "0.0.0.0:9000"),
            &exporter(Some("0.0.0.0:9400"), Some("0.0.0.0:9000")),
        );
        assert_eq!(t.url, "http://127.0.0.1:9400/health");
    }

    #[test]
    fn follows_the_exporters_variable() {
        let t = resolve(
            &own(Some(ValueSource::EnvVariable), "127.0.0.1:9100"),
            &exporter(None, Some("127.0.0.1:9100")),
        );
        assert_eq!(t.url, "http://127.0.0.1:9100/health");
        // Also when the check's environment lacks it (docker exec without -e).
        let t = resolve(
            &own(Some(ValueSource::DefaultValue), "0.0.0.0:8080"),
            &exporter(None, Some("127.0.0.1:9100")),
        );
        assert_eq!(t.url, "http://127.0.0.1:9100/health");
    }

    #[test]
    fn url_flag_and_a_variable_of_its_own_override_the_exporter() {
        let mut o = own(Some(ValueSource::DefaultValue), "0.0.0.0:8080");
        o.url = Some("http://10.0.0.1:1/health".into());
        let t = resolve(&o, &exporter(Some("0.0.0.0:9400"), None));
        assert_eq!(t.url, "http://10.0.0.1:1/health");

        let t = resolve(
            &own(Some(ValueSource::CommandLine), "127.0.0.1:7000"),
            &exporter(Some("0.0.0.0:9400"), None),
        );
        assert_eq!(t.url, "http://127.0.0.1:7000/health");

        let t = resolve(
            &own(Some(ValueSource::EnvVariable), "127.0.0.1:7001"),
            &exporter(Some("0.0.0.0:9400"), Some("0.0.0.0:9000")),
        );
        assert_eq!(t.url, "http://127.0.0.1:7001/health");
    }

    #[test]
    fn falls_back_to_the_variable_then_the_default() {
        let none = Err("no running exporter found in /proc".to_owned());
        let t = resolve(
            &own(Some(ValueSource::EnvVariable), "127.0.0.1:9100"),
            &none,
        );
        assert_eq!(t.url, "http://127.0.0.1:9100/health");
        let t = resolve(&own(Some(ValueSource::DefaultValue), "0.0.0.0:8080"), &none);
        assert_eq!(t.url, "http://127.0.0.1:8080/health");
        assert!(t.why.contains("no running exporter"), "{}", t.why);
    }

    #[test]
    fn reads_the_address_from_a_command_line() {
        let argv = |args: &[&str]| -> Vec<OsString> {
            std::iter::once("system-info-exporter")
                .chain(args.iter().copied())
                .map(OsString::from)
                .collect()
        };
        assert_eq!(
            served_address(&argv(&["--web.listen-address=0.0.0.0:9400"])),
            Some(Some(addr("0.0.0.0:9400")))
        );
        assert_eq!(
            served_address(&argv(&[
                "--log.level",
                "debug",
                "--web.listen-address",
                "[::]:9400"
            ])),
            Some(Some(addr("[::]:9400")))
        );
        assert_eq!(served_address(&argv(&["--log.level=debug"])), Some(None));
        // Another health check is not the exporter.
        assert_eq!(served_address(&argv(&["healthcheck"])), None);
        assert_eq!(
            served_address(&argv(&["--web.listen-address=0.0.0.0:1", "healthcheck"])),
            None
        );
    }

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            split_nul(b"/bin/x\0--a=1\0\0"),
            vec![
                OsString::from("/bin/x"),
                OsString::from("--a=1"),
                OsString::new()
            ]
        );
        assert_eq!(
            listen_env(b"PATH=/bin\0SIE_WEB_LISTEN_ADDRESS=127.0.0.1:9\0"),
            Some(addr("127.0.0.1:9"))
        );
        assert_eq!(listen_env(b"SIE_WEB_LISTEN_ADDRESS_X=127.0.0.1:9\0"), None);
    }

    #[test]
    fn picks_pid_1_or_one_agreeing_exporter() {
        let e = |pid, port: Option<&str>| Exporter {
            pid,
            flag: port.map(addr),
            env: None,
        };
        assert_eq!(pick(vec![e(40, None), e(1, None)]).unwrap().pid, 1);
        assert_eq!(
            pick(vec![e(40, Some("0.0.0.0:1")), e(30, Some("0.0.0.0:1"))])
                .unwrap()
                .pid,
            30
        );
        let err = pick(vec![e(40, Some("0.0.0.0:1")), e(30, Some("0.0.0.0:2"))]).unwrap_err();
        assert!(
            err.contains("pids 30, 40") && err.contains("--url"),
            "{err}"
        );
        assert!(pick(vec![]).is_err());
    }
}
