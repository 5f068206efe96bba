//! Parsers of flag values: each error says what to write instead.

use std::net::SocketAddr;
use std::time::Duration;

pub(super) fn parse_interval(value: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(value)
        .map_err(|e| format!("{e}; write a duration such as 5s, 500ms or 1m"))?;
    if interval < Duration::from_millis(100) {
        return Err("must be at least 100ms".to_owned());
    }
    Ok(interval)
}

pub(super) fn parse_listen_address(value: &str) -> Result<SocketAddr, String> {
    let full = match value.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => value.to_owned(),
    };
    full.parse().map_err(|_| {
        "write an address and port such as 0.0.0.0:8080, [::]:8080 or :8080".to_owned()
    })
}

pub(super) fn parse_timeout(value: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(value)
        .map_err(|e| format!("{e}; write a duration such as 10s or 3m"))?;
    if timeout < Duration::from_millis(100) {
        return Err("must be at least 100ms".to_owned());
    }
    Ok(timeout)
}

pub(super) fn parse_telemetry_path(value: &str) -> Result<String, String> {
    match value {
        "/" | "/health" | "/ready" => Err(format!(
            "{value} is taken by another endpoint; pick another path such as /metrics"
        )),
        path if path.starts_with('/') => Ok(path.to_owned()),
        _ => Err("must start with '/', e.g. /metrics".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_intervals() {
        assert_eq!(parse_interval("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_interval("10ms").is_err());
        assert!(parse_interval("five").is_err());
    }

    #[test]
    fn parses_listen_addresses_with_or_without_a_host() {
        let address = |s: &str| parse_listen_address(s).map(|a| a.to_string());
        assert_eq!(address(":9400").as_deref(), Ok("0.0.0.0:9400"));
        assert_eq!(address("127.0.0.1:80").as_deref(), Ok("127.0.0.1:80"));
        assert_eq!(address("[::]:8080").as_deref(), Ok("[::]:8080"));
        assert!(address("localhost").is_err());
        assert!(address(":http").is_err());
    }

    #[test]
    fn rejects_clashing_telemetry_paths() {
        assert!(parse_telemetry_path("/health").is_err());
        assert!(parse_telemetry_path("metrics").is_err());
        assert_eq!(parse_telemetry_path("/prom").as_deref(), Ok("/prom"));
    }
}
