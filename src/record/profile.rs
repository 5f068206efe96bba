//! A profile being recorded, and its text: the NVML test double's config
//! format (`key = value` lines, `#` comments; the keys are listed in
//! `tests/nvml-double/nvml_double.h`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

use nvml_wrapper::error::NvmlError;
use nvml_wrapper_sys::bindings::nvmlReturn_t;

use super::codes::{self, Failure, NOT_SUPPORTED};

/// Longest line written: the double reads lines of up to 8 KiB, and shorter
/// ones read better.
const WIDTH: usize = 100;

/// One line: `key = value  # comment`, or only the comment when `key` is empty.
#[derive(Debug, Clone)]
struct Line {
    key: String,
    value: String,
    comment: Option<String>,
}

/// Everything recorded, in the order it is written.
#[derive(Debug, Default)]
pub(super) struct Profile {
    globals: Vec<Line>,
    pub(super) gpus: Vec<GpuProfile>,
    processes: Vec<Line>,
}

impl Profile {
    pub(super) fn set(&mut self, key: &str, value: impl Display, comment: Option<String>) {
        self.globals.push(line(key, value, comment));
    }

    /// A comment line among the global keys.
    pub(super) fn note(&mut self, comment: String) {
        self.globals.push(line("", "", Some(comment)));
    }

    /// `process.NAME = gpu=N pid=... `
    pub(super) fn process(&mut self, name: String, value: String) {
        self.processes
            .push(line(&format!("process.{name}"), value, None));
    }

    /// Each failed query once, with its code and the GPUs it failed on, e.g.
    /// "fans NOT_SUPPORTED (GPU 0, 1)"; element indices are left out.
    pub(super) fn failures(&self) -> Vec<String> {
        let mut failed: BTreeMap<(&str, &str), BTreeSet<u32>> = BTreeMap::new();
        for gpu in &self.gpus {
            for (query, code) in &gpu.failures {
                let query = query.split('.').next().unwrap_or(query);
                let gpus = failed.entry((query, code.as_str())).or_default();
                gpus.insert(gpu.index);
            }
        }
        let gpu_list = |gpus: &BTreeSet<u32>| {
            let list: Vec<String> = gpus.iter().map(u32::to_string).collect();
            list.join(", ")
        };
        failed
            .iter()
            .map(|((query, code), gpus)| format!("{query} {code} (GPU {})", gpu_list(gpus)))
            .collect()
    }

    /// The profile's text, after `header` (comment lines without the `# `).
    pub(super) fn render(&self, header: &[String]) -> String {
        let mut text = String::new();
        for line in header {
            push_comment(&mut text, line);
        }
        text.push('\n');
        write_lines(&mut text, "", &self.globals);
        for gpu in &self.gpus {
            text.push('\n');
            write_lines(&mut text, &format!("gpu.{}.", gpu.index), &gpu.lines);
            write_words(
                &mut text,
                &format!("gpu.{}.unsupported = ", gpu.index),
                &gpu.unsupported,
            );
        }
        if !self.processes.is_empty() {
            text.push('\n');
            write_lines(&mut text, "", &self.processes);
        }
        text
    }
}

/// What one GPU answered.
#[derive(Debug)]
pub(super) struct GpuProfile {
    pub(super) index: u32,
    lines: Vec<Line>,
    /// Queries that answered NOT_SUPPORTED, as the double's `unsupported` words.
    unsupported: Vec<String>,
    /// Every failed query (`name` or `name.K`) and its code's name.
    failures: Vec<(String, String)>,
}

impl GpuProfile {
    pub(super) fn new(index: u32) -> Self {
        Self {
            index,
            lines: Vec::new(),
            unsupported: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// `gpu.N.key = value`.
    pub(super) fn set(&mut self, key: impl Into<String>, value: impl Display) {
        self.lines.push(line(&key.into(), value, None));
    }

    pub(super) fn set_noted(&mut self, key: &str, value: impl Display, comment: String) {
        self.lines.push(line(key, value, Some(comment)));
    }

    /// A comment line.
    pub(super) fn note(&mut self, comment: impl Into<String>) {
        self.lines.push(line("", "", Some(comment.into())));
    }

    /// The answer of query `query` (element `index`), or `None` with the
    /// failure recorded.
    pub(super) fn answer<T>(
        &mut self,
        query: &str,
        index: Option<u32>,
        result: Result<T, NvmlError>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.fail(query, index, error.into());
                None
            }
        }
    }

    /// Records that query `query` (element `index`) failed: NOT_SUPPORTED as
    /// an `unsupported` word, any other code as an `error.` key.
    pub(super) fn fail(&mut self, query: &str, index: Option<u32>, failure: Failure) {
        let name = match index {
            Some(index) => format!("{query}.{index}"),
            None => query.to_owned(),
        };
        // A query made twice (the field-value call) is written once.
        if self.failures.iter().any(|(failed, _)| *failed == name) {
            return;
        }
        let (code, comment) = match failure {
            Failure::Code(code) => (code, None),
            Failure::Absent(error) => {
                // "<library path>: undefined symbol: nvmlX": the symbol only.
                let symbol = error.rsplit(": ").next().unwrap_or(&error);
                let comment = format!(
                    "{name}: {symbol} is missing from this driver; replayed as NOT_SUPPORTED"
                );
                (NOT_SUPPORTED, Some(comment))
            }
        };
        self.failures.push((name.clone(), codes::name(code)));
        if let Some(comment) = comment {
            self.note(comment);
        }
        if code == NOT_SUPPORTED {
            self.unsupported.push(name);
        } else {
            self.lines
                .push(line(&format!("error.{name}"), codes::name(code), None));
        }
    }

    /// The GPU's handle cannot be had: `gpu.N.fail`, every query of it fails.
    pub(super) fn fail_whole(&mut self, code: nvmlReturn_t) {
        self.failures.push(("handle".to_owned(), codes::name(code)));
        let comment = "nvmlDeviceGetHandleByIndex_v2 failed".to_owned();
        self.set_noted("fail", codes::name(code), comment);
    }

    /// As `fail`, for a code NVML returned per field.
    pub(super) fn fail_code(&mut self, query: &str, index: Option<u32>, code: nvmlReturn_t) {
        self.fail(query, index, Failure::Code(code));
    }
}

fn line(key: &str, value: impl Display, comment: Option<String>) -> Line {
    Line {
        key: key.to_owned(),
        value: value.to_string(),
        comment,
    }
}

fn write_lines(text: &mut String, prefix: &str, lines: &[Line]) {
    for line in lines {
        match (&line.key[..], &line.comment) {
            ("", Some(comment)) => push_comment(text, comment),
            (key, None) => text.push_str(&format!("{prefix}{key} = {}\n", line.value)),
            (key, Some(comment)) => {
                text.push_str(&format!("{prefix}{key} = {}  # {comment}\n", line.value));
            }
        }
    }
}

/// `start` and the words, on as many lines as keep each under [`WIDTH`]
/// (the double adds up repeated `unsupported` lines).
fn write_words(text: &mut String, start: &str, words: &[String]) {
    let mut current = String::new();
    for word in words {
        if !current.is_empty() && start.len() + current.len() + 1 + word.len() > WIDTH {
            text.push_str(&format!("{start}{current}\n"));
            current.clear();
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    if !current.is_empty() {
        text.push_str(&format!("{start}{current}\n"));
    }
}

/// `# comment`, wrapped at spaces to keep lines under [`WIDTH`].
fn push_comment(text: &mut String, comment: &str) {
    let mut current = String::from("#");
    for word in comment.split(' ') {
        if current.len() > 3 && current.len() + 1 + word.len() > WIDTH {
            text.push_str(current.trim_end());
            text.push('\n');
            // Continuation lines are indented.
            current = String::from("#  ");
        } else {
            current.push(' ');
        }
        current.push_str(word);
    }
    text.push_str(current.trim_end());
    text.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_become_unsupported_words_or_error_keys() {
        let mut profile = Profile::default();
        let mut gpu = GpuProfile::new(1);
        gpu.set("temperature", 40);
        gpu.fail("power_usage", None, Failure::Code(NOT_SUPPORTED));
        gpu.fail("clock", Some(3), Failure::Code(NOT_SUPPORTED));
        gpu.fail("memory", None, Failure::Code(4));
        let absent = "/usr/lib/libnvidia-ml.so.1: undefined symbol: nvmlDeviceGetNumFans";
        gpu.fail("fans", None, Failure::Absent(absent.into()));
        gpu.fail("fans", None, Failure::Absent(absent.into()));
        profile.gpus.push(gpu);
        let text = profile.render(&["a header".to_owned()]);
        assert!(text.starts_with("# a header\n"), "{text}");
        assert!(!text.contains("/usr/lib"), "{text}");
        for expected in [
            "gpu.1.temperature = 40\n",
            "gpu.1.error.memory = NO_PERMISSION\n",
            "gpu.1.unsupported = power_usage clock.3 fans\n",
            "# fans: nvmlDeviceGetNumFans is missing from this driver; replayed as NOT_SUPPORTED\n",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
        assert_eq!(
            profile.failures(),
            [
                "clock NOT_SUPPORTED (GPU 1)",
                "fans NOT_SUPPORTED (GPU 1)",
                "memory NO_PERMISSION (GPU 1)",
                "power_usage NOT_SUPPORTED (GPU 1)",
            ]
        );
    }

    #[test]
    fn long_lists_and_comments_are_wrapped() {
        let mut text = String::new();
        let words: Vec<String> = (0..40).map(|k| format!("nvlink_state.{k}")).collect();
        write_words(&mut text, "gpu.0.unsupported = ", &words);
        assert!(text.lines().count() > 1, "{text}");
        assert!(text.lines().all(|l| l.len() <= WIDTH), "{text}");
        let joined: Vec<&str> = text
            .lines()
            .flat_map(|l| l.trim_start_matches("gpu.0.unsupported = ").split(' '))
            .collect();
        assert_eq!(joined, words);

        let mut text = String::new();
        push_comment(&mut text, &"word ".repeat(50));
        assert!(text.lines().count() > 1, "{text}");
        assert!(
            text.lines().all(|l| l.starts_with('#') && l.len() <= WIDTH),
            "{text}"
        );
    }
}
