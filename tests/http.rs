//! The HTTP side against the real binary: gzip, limits and timeouts, request
//! bodies, malformed requests, the HTTP self-metrics, and an invalid web
//! config. Timeouts are set short here; bounds are generous multiples.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{DoubleConfig, Driver, Exporter, nvml_double, wait_for};

fn start(test: &str, gpus: u32, extra: &[&str]) -> Exporter {
    let config = DoubleConfig::new(test, &format!("gpu_count = {gpus}\n"));
    let library = format!("--nvml.library={}", nvml_double(Driver::Current).display());
    let mut args = vec![
        library.as_str(),
        "--collect.interval=200ms",
        "--no-collector.pods",
    ];
    args.extend(extra);
    let exporter = Exporter::start(&args, Some(&config));
    exporter.scrape_until("GPU metrics", |s| s.has("nvidia_gpu_up"));
    exporter
}

fn connect(exporter: &Exporter) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", exporter.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Sends `request` on a new connection and reads until the server closes it.
fn exchange(exporter: &Exporter, request: &[u8]) -> String {
    let mut stream = connect(exporter);
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// How long until the server closes `stream` (a read returns 0 or fails).
fn time_to_close(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => continue,
        }
    }
}

/// Reads one response (headers and a `Content-Length` body) from a kept-alive connection.
fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .map(|l| l.trim().parse().unwrap())
                .unwrap_or(0);
            let body_start = end + 4;
            while data.len() < body_start + length {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "closed mid-body");
                data.extend_from_slice(&buf[..n]);
            }
            return (head, data[body_start..body_start + length].to_vec());
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before a response");
        data.extend_from_slice(&buf[..n]);
    }
}

const GET_METRICS: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n";

#[test]
fn gzip_when_accepted_one_member_equal_to_the_text() {
    let exporter = start("http-gzip", 8, &[]);
    let mut stream = connect(&exporter);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n")
        .unwrap();
    let (head, gzipped) = read_response(&mut stream);
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("vary: Accept-Encoding"), "{head}");
    // One gzip member: a decoder that stops after the first member reads it all.
    let mut text = String::new();
    flate2::read::GzDecoder::new(gzipped.as_slice())
        .read_to_string(&mut text)
        .unwrap();
    stream.write_all(GET_METRICS).unwrap();
    let (head, plain) = read_response(&mut stream);
    assert!(!head.contains("content-encoding"), "{head}");
    let families = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("# TYPE"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        families(&text),
        families(&String::from_utf8(plain.clone()).unwrap())
    );
    assert!(
        gzipped.len() * 8 < plain.len(),
        "gzip: {} bytes for {} of text",
        gzipped.len(),
        plain.len()
    );
    // Refused encodings get text.
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip;q=0, br\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut stream);
    assert!(!head.contains("content-encoding"), "{head}");
}

#[test]
fn slow_headers_and_idle_connections_are_closed_by_their_timeouts() {
    let exporter = start(
        "http-timeouts",
        1,
        &["--web.read-header-timeout=1s", "--web.idle-timeout=3s"],
    );
    // Nothing sent: closed by the header timeout.
    let waited = time_to_close(&mut connect(&exporter));
    assert!(
        waited < Duration::from_secs(3),
        "silent client open for {waited:?}"
    );
    // Half a header, then nothing.
    let mut slow = connect(&exporter);
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let waited = time_to_close(&mut slow);
    assert!(
        waited < Duration::from_secs(3),
        "slow header open for {waited:?}"
    );
    // A header trickled a byte at a time still ends at the header timeout.
    let mut trickle = connect(&exporter);
    let started = Instant::now();
    let mut closed = false;
    for byte in b"GET /metrics HTTP/1.1\r\nHost: trickle-trickle-trickle\r\n" {
        if trickle.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(closed || time_to_close(&mut trickle) + started.elapsed() < Duration::from_secs(5));
    assert!(started.elapsed() < Duration::from_secs(5));

    // A kept-alive connection outlives the header timeout between requests,
    // and is closed by the idle timeout.
    let mut kept = connect(&exporter);
    kept.write_all(GET_METRICS).unwrap();
    let (head, _) = read_response(&mut kept);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    std::thread::sleep(Duration::from_millis(1500));
    kept.write_all(GET_METRICS).unwrap();
    let (head, _) = read_response(&mut kept);
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "kept-alive connection: {head}"
    );
    let waited = time_to_close(&mut kept);
    assert!(
        waited > Duration::from_secs(2) && waited < Duration::from_secs(9),
        "idle connection closed after {waited:?}"
    );

    let s = exporter.scrape();
    let closed = |reason| {
        s.value(
            "system_info_exporter_http_connections_closed_total",
            &[("reason", reason)],
        )
        .unwrap()
    };
    assert!(closed("header_timeout") >= 3.0, "{}", s.text);
    assert!(closed("idle_timeout") >= 1.0);
    let scrapes = s.value(
        "system_info_exporter_http_requests_total",
        &[("handler", "metrics"), ("code", "200")],
    );
    assert!(scrapes.unwrap() >= 2.0, "{}", s.text);
}

#[test]
fn bodies_malformed_and_oversized_requests_are_refused_cleanly() {
    let exporter = start("http-refused", 1, &[]);
    let answer = exchange(
        &exporter,
        b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let answer = exchange(
        &exporter,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let answer = exchange(&exporter, b"\x00\x01\x02garbage\xff\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 400") || answer.is_empty(),
        "{answer}"
    );
    let answer = exchange(&exporter, b"GET /metrics HTTP/9.9 extra\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 400") || answer.is_empty(),
        "{answer}"
    );
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = exchange(&exporter, huge.as_bytes());
    assert!(
        answer.starts_with("HTTP/1.1 431") || answer.is_empty(),
        "{answer}"
    );
    // An HTTP/2 preface and a TLS ClientHello: closed, not served.
    let answer = exchange(&exporter, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert!(!answer.contains("200 OK"), "{answer}");
    let answer = exchange(&exporter, &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 1, 0]);
    assert!(!answer.contains("200 OK"), "{answer}");

    let s = exporter.scrape();
    assert_eq!(
        s.value(
            "system_info_exporter_http_requests_total",
            &[("handler", "metrics"), ("code", "413")]
        ),
        Some(2.0)
    );
    let errors = s.value(
        "system_info_exporter_http_connections_closed_total",
        &[("reason", "error")],
    );
    assert!(errors.unwrap() >= 3.0, "{}", s.text);
    let log = exporter.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.lines().count() < 10, "log flood:\n{log}");
}

#[test]
fn scrapes_beyond_max_requests_get_503_at_once() {
    // 32 clients scraping at once against a limit of 1: some are refused.
    let exporter = start("http-max-requests", 64, &["--web.max-requests=1"]);
    let url = exporter.url("/metrics");
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..32)
            .map(|_| {
                scope.spawn(|| {
                    (0..20)
                        .map(|_| common::http("GET", &url).unwrap().status)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    let refused = statuses.iter().filter(|s| **s == 503).count();
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(refused + served, statuses.len(), "{statuses:?}");
    assert!(
        refused > 0 && served > 0,
        "{refused} refused, {served} served"
    );
    // A scrape counts until the server has sent its body, a moment after
    // the client has read it: the next scrape may still be refused.
    let mut refused = refused;
    let s = wait_for("a scrape after the others", Duration::from_secs(10), || {
        let reply = exporter.get("/metrics").unwrap();
        if reply.status == 503 {
            refused += 1;
            return None;
        }
        Some(common::Scrape::parse(&reply.body))
    });
    let counted = s.value(
        "system_info_exporter_http_requests_total",
        &[("handler", "metrics"), ("code", "503")],
    );
    assert_eq!(counted, Some(refused as f64));
    // /health is not limited. (During the burst the collector threads may
    // have been starved for more than 3 intervals on a small machine, which
    // /health rightly reports as stale; it is healthy again right after.)
    wait_for("/health to answer 200", Duration::from_secs(10), || {
        Some(exporter.get("/health").unwrap().status).filter(|s| *s == 200)
    });
}

#[test]
fn at_the_connection_limit_the_oldest_waiting_connection_makes_room() {
    let exporter = start("http-max-connections", 1, &["--web.max-connections=4"]);
    let mut idle: Vec<TcpStream> = (0..4).map(|_| connect(&exporter)).collect();
    std::thread::sleep(Duration::from_millis(200));
    // A scraper connecting now is served; the oldest idle connection is closed.
    assert_eq!(exporter.get("/metrics").unwrap().status, 200);
    let waited = time_to_close(&mut idle[0]);
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    let s = exporter.scrape();
    assert!(
        s.value(
            "system_info_exporter_http_connections_closed_total",
            &[("reason", "evicted")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        s.value("system_info_exporter_http_connections_open", &[])
            .unwrap()
            <= 4.0
    );
    assert_eq!(
        exporter.log().matches("connection limit reached").count(),
        1,
        "logged once"
    );
}

#[test]
fn disable_exporter_metrics_drops_the_http_metrics() {
    let exporter = start("http-no-self", 1, &["--web.disable-exporter-metrics"]);
    let s = exporter.scrape();
    assert!(!s.has("system_info_exporter_http_requests_total"));
    assert!(!s.has("process_resident_memory_bytes"));
    assert!(s.has("system_info_exporter_build_info"));
}

#[test]
fn an_invalid_web_config_stops_the_exporter_with_code_2() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("http-invalid");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text, expected) in [
        (
            "unknown.yml",
            "basic_auth_user:\n  a: b\n",
            "unknown field `basic_auth_user`",
        ),
        (
            "missing-cert.yml",
            "tls_server_config:\n  cert_file: nowhere.crt\n  key_file: nowhere.key\n",
            "nowhere.crt",
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let flag = format!("--web.config.file={}", path.display());
        let mut exporter = Exporter::spawn(&["--no-collector.gpu", &flag], None);
        let status = exporter.wait_for_exit();
        assert_eq!(status.code(), Some(2), "{}", exporter.log());
        let log = exporter.log();
        assert!(log.contains(expected) && log.contains(name), "{log}");
        assert_eq!(log.lines().count(), 1, "one message: {log}");
    }
}
