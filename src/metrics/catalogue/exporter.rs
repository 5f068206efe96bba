//! The `system_info_exporter_*` metrics: the exporter's own state.

use super::*;
use crate::metrics::labels::{CloseReason, HttpEncoding, HttpHandler, KubeApiError, NvmlPhase};

const COLLECTOR: Label = free("collector");

catalogue! { Exporter:
    BUILD_INFO = Gauge "system_info_exporter_build_info" [free("version"), free("revision")] unit "always 1",
        "Version and revision of the exporter; always 1.",
        "build (`git rev-parse --short HEAD` at build time, or `SIE_REVISION`)";
    COLLECT_DURATION = Gauge "system_info_exporter_collect_duration_seconds" [COLLECTOR] unit "s",
        "How long the collector's last collection took.",
        "duration of the collector's last collection; `collector` is each running collector: `gpu`, `host`, `processes`, `pods`, `hpc`";
    COLLECT_SUCCESS = Gauge "system_info_exporter_collect_success" [COLLECTOR] unit "1/0",
        "Whether the collector's last collection read its source (1) or not (0).",
        "0 when the source could not be read (for `gpu`: NVML unavailable)";
    LAST_COLLECT_TIMESTAMP = Gauge "system_info_exporter_last_collect_timestamp_seconds"
        [COLLECTOR] unit "Unix seconds",
        "Unix time at which the collector's last collection finished.",
        "end of the collector's last collection";
    COLLECTOR_ERRORS = Counter "system_info_exporter_collector_errors_total" [COLLECTOR] unit "collections",
        "Collections of the collector that failed to read its source since the exporter started.",
        "counted by the collection loop, which logs each distinct error once with the collector's name";
    NVML_CALLS = Counter "system_info_exporter_nvml_calls_total"
        [values("phase", NvmlPhase::NAMES)] unit "calls",
        "NVML calls the exporter made since it started: initialisation, discovery of each GPU once per initialisation, periodic collections, and the event thread.",
        "counted by the GPU collector";
    POD_RESOURCES_ERRORS = Counter "system_info_exporter_pod_resources_errors_total" [] unit "calls",
        "Calls to the kubelet pod-resources API that failed or timed out.",
        "only with pod attribution";

    KUBERNETES_API_ERRORS = Counter "system_info_exporter_kubernetes_api_errors_total"
        [values("reason", KubeApiError::NAMES)] unit "requests",
        "Requests to the Kubernetes API (this node's ResourceSlices, to resolve DRA devices) that failed, by reason.",
        "only where the pods collector resolves DRA devices: a service-account token is mounted and `--collector.pods.dra` is on";

    HTTP_REQUESTS = Counter "system_info_exporter_http_requests_total"
        [values("handler", HttpHandler::NAMES), free("code")] unit "requests",
        "HTTP requests answered, by handler and status code.",
        "counted by the HTTP server; `code` is the status code sent (e.g. 503 beyond `--web.max-requests`, 401 without valid credentials); requests hyper rejects before routing (malformed, oversized headers) are not requests here but connections closed with `reason=\"error\"`";
    HTTP_METRICS_RESPONSE_BYTES = Counter "system_info_exporter_http_metrics_response_bytes_total"
        [values("encoding", HttpEncoding::NAMES)] unit "bytes",
        "Bytes of `/metrics` bodies sent, by content encoding: what scraping costs the network.",
        "counted by the HTTP server; `gzip` when the scraper accepts it (Prometheus does)";
    HTTP_REQUESTS_IN_FLIGHT = Gauge "system_info_exporter_http_requests_in_flight" [] unit "requests",
        "HTTP requests being answered now.",
        "counted by the HTTP server";
    HTTP_CONNECTIONS_OPEN = Gauge "system_info_exporter_http_connections_open" [] unit "connections",
        "Open client connections.",
        "counted by the HTTP server; at most `--web.max-connections`";
    HTTP_CONNECTIONS_REFUSED = Counter "system_info_exporter_http_connections_refused_total" [] unit "connections",
        "Connections closed at once because `--web.max-connections` were open and none of them was waiting for a request.",
        "counted by the HTTP server";
    HTTP_CONNECTIONS_CLOSED = Counter "system_info_exporter_http_connections_closed_total"
        [values("reason", CloseReason::NAMES)] unit "connections",
        "Connections closed, by reason: the client, a header, idle or write timeout, eviction at the connection limit, a protocol or TLS error, shutdown.",
        "counted by the HTTP server";
    HTTP_TLS_HANDSHAKE_FAILURES = Counter "system_info_exporter_http_tls_handshake_failures_total" [] unit "handshakes",
        "TLS handshakes that failed or timed out (plain HTTP to the TLS port, refused client certificates, unsupported versions).",
        "only with `tls_server_config` in `--web.config.file`";
    HTTP_AUTH_FAILURES = Counter "system_info_exporter_http_auth_failures_total" [] unit "requests",
        "Requests refused with 401: no, malformed or wrong basic-auth credentials.",
        "only with `basic_auth_users` in `--web.config.file`";
    WEB_CONFIG_RELOAD_SUCCESS = Gauge "system_info_exporter_web_config_last_reload_successful" [] unit "1/0",
        "Whether the web config file was valid (1) or not (0, the previous configuration stays in force) when it was last read.",
        "`--web.config.file`, read at start and whenever it or a file it names changes; 1 without one";
}
