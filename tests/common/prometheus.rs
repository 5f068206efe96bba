//! A real Prometheus server (the Debian package) on a free loopback port,
//! for end-to-end tests; stopped and its data removed when dropped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Prometheus {
    child: Child,
    pub url: String,
    pub dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Starts Prometheus with `config` (its `prometheus.yml`) in a fresh
    /// directory named after `test`.
    pub fn start(test: &str, config: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("sie-prometheus-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = super::free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("cannot start prometheus");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    /// A GET of the HTTP API, parsed; `None` while Prometheus is not answering.
    pub fn get(&self, path: &str, params: &[(&str, &str)]) -> Option<serde_json::Value> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut request = agent.get(format!("{}{path}", self.url));
        for (key, value) in params {
            request = request.query(key, value);
        }
        let mut response = request.call().ok()?;
        serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()
    }

    /// An instant query's result: each series' labels and value.
    pub fn query(&self, query: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let Some(reply) = self.get("/api/v1/query", &[("query", query)]) else {
            return Vec::new();
        };
        assert_eq!(reply["status"], "success", "{query}: {reply}");
        let result = reply["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        result
            .iter()
            .map(|series| {
                let labels = serde_json::from_value(series["metric"].clone()).unwrap();
                let value = series["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }

    /// The value of the first series an instant query returns.
    pub fn value(&self, query: &str) -> Option<f64> {
        self.query(query).first().map(|(_, value)| *value)
    }
}
