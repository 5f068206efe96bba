//! Abuse: thousands of slow or concurrent clients and a long run of scrapes,
//! each bounded in time and followed by the same checks: `/metrics` answers,
//! no panic in the log, open descriptors back to where they were, resident
//! memory within 2 MiB of where it started. Loopback only.

mod common;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{DoubleConfig, Driver, Exporter, nvml_double, wait_for};

const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const CLIENTS: usize = 2000;

fn start(test: &str, gpus: u32, extra: &[&str]) -> Exporter {
    raise_descriptor_limit();
    let config = DoubleConfig::new(test, &format!("gpu_count = {gpus}\n"));
    let library = format!("--nvml.library={}", nvml_double(Driver::Current).display());
    let mut args = vec![
        library.as_str(),
        "--collect.interval=1s",
        "--no-collector.pods",
        "--web.read-header-timeout=2s",
    ];
    args.extend(extra);
    let exporter = Exporter::start(&args, Some(&config));
    exporter.scrape_until("GPU metrics", |s| s.has("nvidia_gpu_up"));
    exporter
}

/// The test opens thousands of sockets; the soft limit may be 1,024.
fn raise_descriptor_limit() {
    // SAFETY: getrlimit/setrlimit with a valid resource and a struct we own.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        assert!(
            limit.rlim_cur as usize > CLIENTS + 200,
            "the hard descriptor limit ({}) is too low for {CLIENTS} clients",
            limit.rlim_cur
        );
    }
}

/// Resident memory the process allocated (`RssAnon`): what a leak or kept
/// arenas grow. The resident pages of the binary's code (`RssFile`) also grow
/// when an attack runs code that scrapes do not (about 1 MiB here, of a
/// debug binary); they are shared with the page cache and are not memory
/// the exporter holds.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Where the exporter stands before an attack.
struct Baseline {
    rss_kib: u64,
    descriptors: usize,
}

impl Baseline {
    /// After enough scrapes that the allocator and the runtime have their
    /// working set: 200 in a row, and 64 connections at once (the runtime
    /// grows some tables once, at its first burst of connections).
    fn take(exporter: &Exporter) -> Self {
        for _ in 0..200 {
            exporter.scrape();
        }
        std::thread::scope(|scope| {
            for _ in 0..64 {
                scope.spawn(|| exporter.scrape());
            }
        });
        std::thread::sleep(Duration::from_secs(3));
        let baseline = Self {
            rss_kib: rss_kib(exporter.pid()),
            descriptors: descriptors(exporter.pid()),
        };
        eprintln!(
            "baseline: {} KiB anonymous resident, {} descriptors",
            baseline.rss_kib, baseline.descriptors
        );
        baseline
    }

    /// `/metrics` answers, no panic, descriptors back, memory back within 2 MiB.
    fn check_recovered(&self, exporter: &Exporter, attack: &str) {
        let pid = exporter.pid();
        assert!(
            exporter.scrape().has("nvidia_gpu_up"),
            "{attack}: no scrape"
        );
        let log = exporter.log();
        assert!(!log.contains("panicked"), "{attack}: {log}");
        wait_for(
            "descriptors back to the baseline",
            Duration::from_secs(10),
            || (descriptors(pid) <= self.descriptors).then_some(()),
        );
        // The exporter trims its heap at once and 1, 5 and 15 s after a burst.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut rss = rss_kib(pid);
        while rss > self.rss_kib + 2048 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            rss = rss_kib(pid);
        }
        assert!(
            rss <= self.rss_kib + 2048,
            "{attack}: {rss} KiB resident after, {} KiB before",
            self.rss_kib
        );
        eprintln!(
            "{attack}: {rss} KiB anonymous resident after (baseline {} KiB), {} descriptors",
            self.rss_kib,
            descriptors(pid)
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Reads one `Content-Length` response; returns its status.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(head[9..12].parse().unwrap_or(0));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

const GET_METRICS: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: abuse\r\n\r\n";

#[test]
fn two_thousand_slow_header_clients_are_closed_and_scrapes_go_on() {
    let exporter = start("abuse-slow", 8, &[]);
    let baseline = Baseline::take(&exporter);
    let port = exporter.port;
    let (closed_in, scrape) = runtime().block_on(async move {
        let started = Instant::now();
        let mut clients = Vec::with_capacity(CLIENTS);
        for _ in 0..CLIENTS {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: slow\r\n")
                .await
                .unwrap();
            clients.push(stream);
        }
        // A scraper that connects during the attack is served in time.
        let scrape = tokio::time::timeout(Duration::from_secs(10), async {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
            stream.write_all(GET_METRICS).await?;
            read_response(&mut stream, &mut Vec::new()).await
        })
        .await;
        // Every slow client is closed (by the header timeout, or evicted at
        // the connection limit to admit newer ones).
        let waits = clients.into_iter().map(|mut stream| async move {
            let mut buf = [0u8; 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        });
        let all_closed = futures_join_all(waits);
        tokio::time::timeout(HEADER_TIMEOUT * 3 + Duration::from_secs(10), all_closed)
            .await
            .expect("slow clients still open");
        (started.elapsed(), scrape)
    });
    eprintln!("{CLIENTS} slow clients all closed {closed_in:?} after the first connected");
    assert_eq!(
        scrape.expect("scrape timed out").expect("scrape failed"),
        200
    );
    // The server counts a close just after the client sees it.
    let closed = |s: &common::Scrape, reason| {
        s.value(
            "system_info_exporter_http_connections_closed_total",
            &[("reason", reason)],
        )
        .unwrap()
    };
    let s = wait_for("every slow client counted", Duration::from_secs(10), || {
        let s = exporter.scrape();
        let counted = closed(&s, "header_timeout") + closed(&s, "evicted");
        (counted >= CLIENTS as f64).then_some(s)
    });
    eprintln!(
        "closed by the header timeout: {}, evicted: {}, refused: {:?}",
        closed(&s, "header_timeout"),
        closed(&s, "evicted"),
        s.value("system_info_exporter_http_connections_refused_total", &[])
    );
    baseline.check_recovered(&exporter, "slow headers");
}

#[test]
fn two_thousand_concurrent_keep_alive_scrapers() {
    let exporter = start(
        "abuse-concurrent",
        8,
        &["--web.max-connections=4096", "--web.max-requests=0"],
    );
    let baseline = Baseline::take(&exporter);
    let port = exporter.port;
    let statuses = runtime().block_on(async move {
        let scrapers = (0..CLIENTS).map(|_| async move {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
            let mut buf = Vec::new();
            let mut statuses = Vec::new();
            for _ in 0..3 {
                stream.write_all(GET_METRICS).await?;
                statuses.push(read_response(&mut stream, &mut buf).await?);
            }
            std::io::Result::Ok(statuses)
        });
        tokio::time::timeout(Duration::from_secs(120), futures_join_all(scrapers))
            .await
            .expect("scrapers did not finish in 2 minutes")
    });
    let mut ok = 0;
    for result in statuses {
        let statuses = result.expect("a scraper failed");
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        ok += statuses.len();
    }
    assert_eq!(ok, CLIENTS * 3);
    baseline.check_recovered(&exporter, "2,000 concurrent scrapers");
}

#[test]
fn a_hundred_thousand_sequential_scrapes() {
    let exporter = start("abuse-sequential", 1, &[]);
    let baseline = Baseline::take(&exporter);
    let port = exporter.port;
    let started = Instant::now();
    runtime().block_on(async move {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut buf = Vec::new();
        for _ in 0..100_000 {
            stream.write_all(GET_METRICS).await.unwrap();
            assert_eq!(read_response(&mut stream, &mut buf).await.unwrap(), 200);
        }
    });
    eprintln!("100,000 scrapes in {:?}", started.elapsed());
    baseline.check_recovered(&exporter, "100,000 sequential scrapes");
}

/// Runs futures concurrently on the current task (the test needs no other
/// crate for it).
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}
