//! Problems that concern one entry of a directory, logged once each: a
//! collection that reads the rest is not a failed one, so the collection
//! loop's once-per-error logging does not apply, and logging at every
//! collection would repeat the same line every interval.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tracing::{info, warn};

/// The problem of each path at the last collection.
#[derive(Debug, Default)]
pub(super) struct Problems(BTreeMap<PathBuf, String>);

impl Problems {
    /// Takes this collection's problems: logs a warning for each that is new
    /// or has changed, and one line for each path whose problem is gone.
    pub(super) fn note(&mut self, problems: Vec<(PathBuf, String)>) {
        let (new, gone) = self.changes(problems);
        for problem in new {
            warn!(collector = "hpc", "{problem}");
        }
        for path in gone {
            info!(
                collector = "hpc",
                "the job mapping entry {} is read again, or gone",
                path.display()
            );
        }
    }

    /// The problems that are new or changed, and the paths whose problem is gone.
    fn changes(&mut self, problems: Vec<(PathBuf, String)>) -> (Vec<String>, Vec<PathBuf>) {
        let current: BTreeMap<PathBuf, String> = problems.into_iter().collect();
        let new = current
            .iter()
            .filter(|(path, problem)| self.0.get(*path) != Some(problem))
            .map(|(_, problem)| problem.clone())
            .collect();
        let gone = self
            .0
            .keys()
            .filter(|path| !current.contains_key(*path))
            .cloned()
            .collect();
        self.0 = current;
        (new, gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(path: &str, why: &str) -> (PathBuf, String) {
        (PathBuf::from(path), format!("{path}: {why}"))
    }

    #[test]
    fn each_problem_is_reported_when_it_starts_changes_or_ends() {
        let mut problems = Problems::default();
        let (new, gone) =
            problems.changes(vec![problem("/m/x", "bad name"), problem("/m/1", "denied")]);
        assert_eq!(new, ["/m/1: denied", "/m/x: bad name"]);
        assert!(gone.is_empty());
        // The same problems again: nothing to say.
        let (new, gone) =
            problems.changes(vec![problem("/m/1", "denied"), problem("/m/x", "bad name")]);
        assert!(new.is_empty() && gone.is_empty());
        // One changes, one ends.
        let (new, gone) = problems.changes(vec![problem("/m/1", "not a regular file")]);
        assert_eq!(new, ["/m/1: not a regular file"]);
        assert_eq!(gone, [PathBuf::from("/m/x")]);
        let (new, gone) = problems.changes(Vec::new());
        assert!(new.is_empty());
        assert_eq!(gone, [PathBuf::from("/m/1")]);
    }
}
