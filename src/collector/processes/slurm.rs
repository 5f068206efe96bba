//! Which Slurm job a process belongs to, from its `/proc/<pid>/cgroup`:
//! slurmstepd puts each job's processes in a cgroup of the job.
//!
//! - cgroup v2: `0::/system.slice/slurmstepd.scope/job_<id>/step_<step>/user/task_<n>`
//!   (`<node>_slurmstepd.scope` with several slurmd per host).
//! - cgroup v1, one line per controller:
//!   `<n>:<controller>:/slurm/uid_<uid>/job_<id>/step_<step>/task_<n>`
//!   (`/slurm_<node>/` with several slurmd per host).
//!
//! The id is the job's own (an array element or a heterogeneous job
//! component has one of its own), as `SLURM_JOB_ID` and so the prolog's
//! mapping files have it. Since Slurm 26.05 the v2 job directory is named by
//! the job's SLUID (`s` and 13 base-32 digits) unless cgroup.conf has
//! `CgroupJobIdPaths=yes`; the SLUID is not the job id, and Slurm alone can
//! translate it, so such a process gets no job, and [`job`] says so.

/// What a process's cgroup says about its Slurm job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SlurmJob<'a> {
    /// Not in a Slurm job's cgroup.
    None,
    /// In the cgroup of this job id.
    Id(&'a str),
    /// In a Slurm job cgroup named by the job's SLUID (Slurm 26.05 and
    /// later without `CgroupJobIdPaths=yes`).
    Sluid(&'a str),
}

/// The Slurm job of the process whose `/proc/<pid>/cgroup` is `cgroup`.
pub(super) fn job(cgroup: &str) -> SlurmJob<'_> {
    let mut found = SlurmJob::None;
    for line in cgroup.lines() {
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        match in_path(path) {
            SlurmJob::Id(id) => return SlurmJob::Id(id),
            SlurmJob::Sluid(sluid) => found = SlurmJob::Sluid(sluid),
            SlurmJob::None => {}
        }
    }
    found
}

/// The job directory below slurmstepd's scope (v2) or below
/// `slurm/uid_<uid>` (v1). Matched by path component, not from the root: a
/// reader in another cgroup namespace sees the path relative to its own.
fn in_path(path: &str) -> SlurmJob<'_> {
    let parts: Vec<&str> = path.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let job_dir = if part.ends_with("slurmstepd.scope") {
            parts.get(i + 1)
        } else if (*part == "slurm" || part.starts_with("slurm_"))
            && parts
                .get(i + 1)
                .is_some_and(|uid| number(uid.strip_prefix("uid_")))
        {
            parts.get(i + 2)
        } else {
            continue;
        };
        let Some(dir) = job_dir else {
            continue;
        };
        if let Some(id) = dir.strip_prefix("job_").filter(|id| number(Some(id))) {
            return SlurmJob::Id(id);
        }
        if part.ends_with("slurmstepd.scope") && is_sluid(dir) {
            return SlurmJob::Sluid(dir);
        }
    }
    SlurmJob::None
}

fn number(text: Option<&str>) -> bool {
    text.is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
}

/// `s` and 13 Crockford base-32 digits, as Slurm prints a SLUID.
fn is_sluid(dir: &str) -> bool {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    dir.len() == 14
        && dir.starts_with(['s', 'S'])
        && dir
            .bytes()
            .skip(1)
            .all(|b| DIGITS.contains(&b.to_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_job_in_slurm_cgroup_v2_paths() {
        for (cgroup, id) in [
            // `srun --pty bash; cat /proc/$$/cgroup` on a cgroup v2 node (a
            // site's documentation), and paths of Slurm's cgroup_v2 guide.
            (
                "0::/system.slice/slurmstepd.scope/job_840392/step_0/user/task_0\n",
                "840392",
            ),
            // A batch script, the extern step, several slurmd per host.
            (
                "0::/system.slice/slurmstepd.scope/job_3385/step_batch/user/task_0\n",
                "3385",
            ),
            (
                "0::/system.slice/slurmstepd.scope/job_3385/step_extern/user/task_special\n",
                "3385",
            ),
            (
                "0::/system.slice/node7_slurmstepd.scope/job_12/step_0+1/user/task_3\n",
                "12",
            ),
            // Seen from another cgroup namespace (an exporter in a container).
            (
                "0::/../../system.slice/slurmstepd.scope/job_99/step_0/user/task_0\n",
                "99",
            ),
        ] {
            assert_eq!(job(cgroup), SlurmJob::Id(id), "{cgroup}");
        }
    }

    #[test]
    fn finds_the_job_in_slurm_cgroup_v1_paths() {
        // Slurm's documented v1 layout (cgroup.conf(5):
        // `slurm/uid_%uid/job_%jobid/step_%stepid`, one line per controller).
        let v1 = "12:pids:/user.slice\n\
                  10:memory:/slurm/uid_1000/job_31/step_0/task_0\n\
                  5:devices:/slurm/uid_1000/job_31/step_0\n\
                  4:freezer:/slurm/uid_1000/job_31/step_0\n\
                  3:cpuset:/slurm/uid_1000/job_31/step_0\n\
                  1:name=systemd:/system.slice/slurmd.service\n";
        assert_eq!(job(v1), SlurmJob::Id("31"));
        let multiple_slurmd = "4:freezer:/slurm_node7/uid_0/job_4/step_batch\n";
        assert_eq!(job(multiple_slurmd), SlurmJob::Id("4"));
    }

    #[test]
    fn a_sluid_named_job_cgroup_is_told_apart() {
        let cgroup = "0::/system.slice/slurmstepd.scope/s5K1KKYAYG5D00/step_0/user/task_0\n";
        assert_eq!(job(cgroup), SlurmJob::Sluid("s5K1KKYAYG5D00"));
    }

    #[test]
    fn other_cgroups_have_no_job() {
        for cgroup in [
            "0::/system.slice/slurmd.service\n",
            "0::/system.slice/slurmstepd.scope/system\n",
            "0::/system.slice/slurmstepd.scope\n",
            "0::/user.slice/user-1000.slice/session-3.scope\n",
            "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope\n",
            "0::/system.slice/slurmstepd.scope/job_/step_0\n",
            "0::/system.slice/slurmstepd.scope/job_12x/step_0\n",
            "0::/home/slurm/job_12/step_0\n",
            "10:memory:/slurm/uid_x/job_31/step_0\n",
            "0::/\n",
            "",
        ] {
            assert_eq!(job(cgroup), SlurmJob::None, "{cgroup}");
        }
    }
}
