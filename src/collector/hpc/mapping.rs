//! dcgm-exporter's HPC job mapping directory (`--hpc-job-mapping-dir`), read
//! as dcgm-exporter reads it: one file per GPU, named by its NVML index
//! (`0`), or per MIG GPU instance, named by the index and the GPU instance
//! id (`0.3`); each non-empty line, trimmed, is the id of a job that uses it.
//! A missing or empty file means no job. A Slurm prolog writes the files and
//! the epilog removes them (`deploy/slurm/`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A mapping file is a few bytes; anything larger is not one.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// A GPU (NVML index) or one of its MIG GPU instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Target {
    pub(super) gpu: u32,
    pub(super) gpu_instance: Option<u32>,
}

/// What one reading of the directory found.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Mapping {
    /// The jobs of each GPU or GPU instance with at least one, in the file's
    /// order, each once, and the file they came from.
    pub(super) jobs: BTreeMap<Target, (PathBuf, Vec<String>)>,
    /// The entries that could not be used: path and why.
    pub(super) problems: Vec<(PathBuf, String)>,
}

/// Reads every mapping file in `dir`. Fails only when the directory itself
/// cannot be listed; an entry that cannot be used is a problem of its own
/// and the others are still read. Names that begin with a dot are skipped
/// without a word: a prolog may write `.0.tmp` and rename it to `0`.
pub(super) fn read(dir: &Path) -> Result<Mapping, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "the job mapping directory {} does not exist: no GPU is attributed to a Slurm job until it does (create it, or fix --collector.hpc.job-mapping-dir)",
            dir.display()
        ),
        _ => format!(
            "cannot read the job mapping directory {}: {e}; no GPU is attributed to a Slurm job",
            dir.display()
        ),
    })?;
    let mut mapping = Mapping::default();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let problem = format!(
                    "cannot list the job mapping directory {}: {e}",
                    dir.display()
                );
                mapping.problems.push((dir.to_owned(), problem));
                continue;
            }
        };
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let Some(target) = target(&name) else {
            let problem = format!(
                "the job mapping file {} is skipped: its name is not a GPU index (0) or a GPU index and a MIG GPU instance id (0.3)",
                path.display()
            );
            mapping.problems.push((path, problem));
            continue;
        };
        match jobs(&path) {
            Ok(jobs) if jobs.is_empty() => {}
            Ok(jobs) => {
                mapping.jobs.insert(target, (path, jobs));
            }
            Err(why) => {
                let problem = format!(
                    "cannot read the job mapping file {}: {why}; its GPU is not attributed to a job",
                    path.display()
                );
                mapping.problems.push((path, problem));
            }
        }
    }
    mapping.problems.sort();
    Ok(mapping)
}

/// The GPU or GPU instance a file name stands for: `<index>` or
/// `<index>.<gpu instance id>`, in decimal without leading zeros (so that
/// one GPU has one name).
fn target(name: &str) -> Option<Target> {
    let number = |s: &str| -> Option<u32> {
        let canonical = s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
        canonical.then(|| s.parse().ok())?
    };
    match name.split_once('.') {
        None => Some(Target {
            gpu: number(name)?,
            gpu_instance: None,
        }),
        Some((gpu, instance)) => Some(Target {
            gpu: number(gpu)?,
            gpu_instance: Some(number(instance)?),
        }),
    }
}

/// The job ids in a mapping file: each non-empty line, trimmed, once.
fn jobs(path: &Path) -> Result<Vec<String>, String> {
    // Opening a FIFO or a device would block or read forever: regular files only.
    let metadata = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("not a regular file".to_owned());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "larger than {} KiB, not a job mapping file",
            MAX_FILE_BYTES / 1024
        ));
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut jobs: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !jobs.iter().any(|job| job == line) {
            jobs.push(line.to_owned());
        }
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sie-hpc-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn gpu(gpu: u32, gpu_instance: Option<u32>) -> Target {
        Target { gpu, gpu_instance }
    }

    #[test]
    fn names_are_an_index_or_an_index_and_a_gpu_instance() {
        assert_eq!(target("0"), Some(gpu(0, None)));
        assert_eq!(target("12"), Some(gpu(12, None)));
        assert_eq!(target("3.10"), Some(gpu(3, Some(10))));
        assert_eq!(target("2.0"), Some(gpu(2, Some(0))));
        for bad in [
            "",
            "a",
            "-1",
            "+1",
            "01",
            "0.",
            ".1",
            "0.1.2",
            "0.01",
            "GPU-0",
            "0 ",
            "99999999999",
        ] {
            assert_eq!(target(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_non_empty_trimmed_line_is_a_job_once() {
        let dir = scratch("lines");
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        write("0", "1234");
        write("1", "1234\n 1235 \r\n\n1234\n");
        write("2", "1234_7\n1234+0\n");
        write("3", "");
        write("4", "\n  \n");
        write("0.3", "77\n");
        write(".0.tmp", "ignored\n");
        let mapping = read(&dir).unwrap();
        let jobs: Vec<(Target, Vec<&str>)> = mapping
            .jobs
            .iter()
            .map(|(t, (_, jobs))| (*t, jobs.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            jobs,
            [
                (gpu(0, None), vec!["1234"]),
                (gpu(0, Some(3)), vec!["77"]),
                (gpu(1, None), vec!["1234", "1235"]),
                (gpu(2, None), vec!["1234_7", "1234+0"]),
            ]
        );
        assert_eq!(mapping.problems, []);
    }

    #[test]
    fn unusable_entries_are_problems_and_the_rest_is_read() {
        let dir = scratch("problems");
        std::fs::write(dir.join("0"), "1234\n").unwrap();
        std::fs::write(dir.join("gpu0"), "1234\n").unwrap();
        std::fs::create_dir(dir.join("1")).unwrap();
        std::fs::write(dir.join("2"), vec![b'1'; 70 * 1024]).unwrap();
        let mapping = read(&dir).unwrap();
        assert_eq!(mapping.jobs.len(), 1);
        let problems: Vec<String> = mapping.problems.iter().map(|(_, p)| p.clone()).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].contains("/1: not a regular file"),
            "{}",
            problems[0]
        );
        assert!(
            problems[1].contains("/2: larger than 64 KiB"),
            "{}",
            problems[1]
        );
        assert!(
            problems[2].contains("gpu0 is skipped: its name"),
            "{}",
            problems[2]
        );
        for (path, problem) in &mapping.problems {
            assert!(problem.contains(&path.display().to_string()), "{problem}");
        }
    }

    #[test]
    fn a_missing_directory_is_an_error_that_names_it() {
        let dir = scratch("missing").join("absent");
        let error = read(&dir).unwrap_err();
        assert!(
            error.contains(&format!("{} does not exist", dir.display())),
            "{error}"
        );
    }
}
