//! Which Kubernetes container a process belongs to: the container ID from
//! the process's cgroup, and the pod and container names the container
//! runtime recorded for that ID in its state directory (the OCI bundle's
//! `config.json` annotations). A process whose container cannot be named
//! this way gets no pod labels: never a guessed one.

use std::path::{Path, PathBuf};

/// containerd's and CRI-O's per-container state directories.
pub(crate) const DEFAULT_STATE_DIRS: &str = "/run/containerd/io.containerd.runtime.v2.task/k8s.io,/run/containers/storage/overlay-containers";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Container {
    pub(crate) namespace: String,
    pub(crate) pod: String,
    pub(crate) container: String,
}

/// The 64-hex-digit container ID in a `/proc/<pid>/cgroup` file: cgroup v2
/// (`0::/kubepods.slice/.../cri-containerd-<id>.scope`) or v1 (one line per
/// hierarchy), with the systemd driver (`cri-containerd-`, `crio-`,
/// `docker-` scopes) or the cgroupfs driver (`/kubepods/burstable/pod<uid>/<id>`).
pub(super) fn container_id(cgroup: &str) -> Option<&str> {
    cgroup.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        if !path.contains("kubepods") {
            return None;
        }
        let last = path.rsplit('/').next()?;
        let last = last.strip_suffix(".scope").unwrap_or(last);
        let id = last.rsplit_once('-').map_or(last, |(_, id)| id);
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
    })
}

/// The pod and container names of container `id`, from the first state
/// directory that has it. containerd writes `io.kubernetes.cri.*`
/// annotations, CRI-O `io.kubernetes.*` ones.
pub(super) fn lookup(state_dirs: &[PathBuf], id: &str) -> Option<Container> {
    state_dirs.iter().find_map(|dir| {
        let bundle = [
            dir.join(id).join("config.json"),
            dir.join(id).join("userdata/config.json"),
        ];
        let text = bundle.iter().find_map(|path| read_small(path))?;
        let config: serde_json::Value = serde_json::from_str(&text).ok()?;
        let annotations = config.get("annotations")?;
        let get = |keys: [&str; 2]| {
            keys.iter()
                .find_map(|key| annotations.get(*key)?.as_str())
                .map(str::to_owned)
        };
        Some(Container {
            namespace: get([
                "io.kubernetes.cri.sandbox-namespace",
                "io.kubernetes.pod.namespace",
            ])?,
            pod: get(["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"])?,
            container: get([
                "io.kubernetes.cri.container-name",
                "io.kubernetes.container.name",
            ])?,
        })
    })
}

/// Reads a file of at most 1 MiB: a bundle's config is a few kilobytes, and a
/// huge file there is not one to parse on every collection.
fn read_small(path: &Path) -> Option<String> {
    let size = std::fs::metadata(path).ok()?.len();
    (size <= 1 << 20).then(|| std::fs::read_to_string(path).ok())?
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn finds_the_container_id_in_every_cgroup_shape() {
        for cgroup in [
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice/cri-containerd-{ID}.scope\n"
            ),
            format!("0::/kubepods.slice/kubepods-pod1234.slice/crio-{ID}.scope\n"),
            format!("0::/kubepods.slice/kubepods-pod1234.slice/docker-{ID}.scope\n"),
            format!(
                "12:memory:/kubepods/burstable/pod1234-5678/{ID}\n11:cpu:/kubepods/burstable/pod1234-5678/{ID}\n"
            ),
        ] {
            assert_eq!(container_id(&cgroup), Some(ID), "{cgroup}");
        }
        for other in [
            "0::/user.slice/user-0.slice/session-1.scope\n",
            "0::/\n",
            "0::/kubepods.slice/kubepods-burstable.slice\n",
            &format!("0::/system.slice/docker-{ID}.scope\n"),
        ] {
            assert_eq!(container_id(other), None, "{other}");
        }
    }
}
