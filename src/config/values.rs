//! Parsers of flag values: each error says what to write instead.

use std::time::Duration;

/// A duration of at least 100 ms, e.g. `5s`, `500ms`, `1m`; `examples` are
/// suggested when the value is not one.
fn parse_duration(value: &str, examples: &str) -> Result<Duration, String> {
    let value = value.trim();
    if value.starts_with('-') {
        return Err(format!(
            "a duration cannot be negative; write one such as {examples}"
        ));
    }
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "{value:?} has no unit; write {value}s, {value}ms or {value}m"
        ));
    }
    let duration = humantime::parse_duration(value)
        .map_err(|_| format!("{value:?} is not a duration; write one such as {examples}"))?;
    if duration < Duration::from_millis(100) {
        return Err("must be at least 100ms".to_owned());
    }
    Ok(duration)
}

pub(super) fn parse_interval(value: &str) -> Result<Duration, String> {
    parse_duration(value, "5s, 500ms or 1m")
}

pub(super) fn parse_timeout(value: &str) -> Result<Duration, String> {
    parse_duration(value, "10s or 3m")
}

/// The health check's `--url`: an `http://` URL with a host.
pub(super) fn parse_url(value: &str) -> Result<String, String> {
    let uri: http::Uri = value
        .parse()
        .map_err(|_| "not a URL; write one such as http://127.0.0.1:8080/health".to_owned())?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(_)) => Ok(value.to_owned()),
        (Some("https"), _) => Err(
            "the health check speaks plain HTTP only; for a TLS listener use an HTTPS probe (e.g. the Kubernetes probe with scheme: HTTPS)".to_owned(),
        ),
        _ => Err("write an http:// URL with a host, such as http://127.0.0.1:8080/health".to_owned()),
    }
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
    fn duration_errors_say_what_to_write() {
        let error = |s: &str| parse_interval(s).unwrap_err();
        assert_eq!(error("5"), "\"5\" has no unit; write 5s, 5ms or 5m");
        assert!(error("-1s").contains("cannot be negative"));
        assert!(error("five").contains("is not a duration; write one such as 5s"));
        assert!(parse_timeout("ten").unwrap_err().contains("10s or 3m"));
    }

    #[test]
    fn the_health_check_url_is_plain_http() {
        assert!(parse_url("http://127.0.0.1:8080/health").is_ok());
        assert!(parse_url("notaurl").unwrap_err().contains("http://"));
        assert!(
            parse_url("https://x/health")
                .unwrap_err()
                .contains("plain HTTP")
        );
    }

    #[test]
    fn rejects_clashing_telemetry_paths() {
        assert!(parse_telemetry_path("/health").is_err());
        assert!(parse_telemetry_path("metrics").is_err());
        assert_eq!(parse_telemetry_path("/prom").as_deref(), Ok("/prom"));
    }
}
