//! Signs that the recorder runs in a container or sandbox, for the profile's
//! header: some queries fail only there (no permission, processes of other
//! PID namespaces), and a reader of the profile should know.

use std::fs;
use std::path::Path;

/// The signs found under `root` (`/` but in tests), e.g. "/.dockerenv".
pub(super) fn container_hints(root: &Path, container_variable: Option<&str>) -> Vec<String> {
    let mut hints = Vec::new();
    for marker in [".dockerenv", "run/.containerenv"] {
        if root.join(marker).exists() {
            hints.push(format!("/{marker}"));
        }
    }
    if let Some(value) = container_variable.filter(|v| !v.is_empty()) {
        hints.push(format!("container={value}"));
    }
    for name in ["proc/1/cgroup", "proc/self/cgroup"] {
        let Ok(text) = fs::read_to_string(root.join(name)) else {
            continue;
        };
        let words: Vec<&str> = ["docker", "kubepods", "containerd", "libpod", "lxc", "crio"]
            .into_iter()
            .filter(|word| text.contains(word))
            .collect();
        if !words.is_empty() {
            hints.push(format!("/{name} mentions {}", words.join(", ")));
        }
    }
    if let Ok(status) = fs::read_to_string(root.join("proc/self/status")) {
        let nspid: Vec<&str> = status
            .lines()
            .find_map(|line| line.strip_prefix("NSpid:"))
            .map(|pids| pids.split_whitespace().collect())
            .unwrap_or_default();
        if nspid.len() > 1 {
            hints.push(format!(
                "in a nested PID namespace (NSpid {})",
                nspid.join(" ")
            ));
        }
    }
    if fs::read_to_string(root.join("proc/sys/kernel/osrelease"))
        .is_ok_and(|release| release.to_lowercase().contains("gvisor"))
    {
        hints.push("gVisor kernel".to_owned());
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_cgroups_and_pid_namespaces_are_signs() {
        let root = std::env::temp_dir().join(format!("sie-record-env-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("proc/self")).unwrap();
        assert!(container_hints(&root, None).is_empty());
        fs::write(root.join(".dockerenv"), "").unwrap();
        fs::write(
            root.join("proc/self/cgroup"),
            "0::/kubepods/burstable/pod1\n",
        )
        .unwrap();
        fs::write(root.join("proc/self/status"), "Name:\tx\nNSpid:\t4242\t7\n").unwrap();
        assert_eq!(
            container_hints(&root, Some("podman")),
            [
                "/.dockerenv",
                "container=podman",
                "/proc/self/cgroup mentions kubepods",
                "in a nested PID namespace (NSpid 4242 7)",
            ]
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
