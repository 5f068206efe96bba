//! Static checks of the packaging files that the container test cannot see.

use std::fs;

fn read(path: &str) -> String {
    fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn dockerfile_rust_version_matches_the_manifest() {
    let manifest = read("Cargo.toml");
    let rust_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("Cargo.toml declares rust-version");
    let dockerfile = read("Dockerfile");
    let image = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ARG RUST_IMAGE="))
        .expect("Dockerfile declares ARG RUST_IMAGE");
    assert_eq!(image, format!("rust:{rust_version}-slim-bookworm"));
}

#[test]
fn dockerfiles_pull_no_frontend_image() {
    // A `# syntax=` line makes BuildKit pull a frontend image, which fails
    // where no registry is reachable.
    for file in ["Dockerfile", "Dockerfile.original"] {
        let text = read(file);
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().to_lowercase().starts_with("# syntax=")),
            "{file}"
        );
    }
}

/// The stages in order, each as (its `FROM` line, its other lines).
fn stages(dockerfile: &str) -> Vec<(String, Vec<String>)> {
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    // Continuation lines are folded into their instruction.
    let mut instruction = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        instruction.push_str(line.trim_end_matches('\\'));
        instruction.push(' ');
        if line.ends_with('\\') {
            continue;
        }
        let done = std::mem::take(&mut instruction).trim().to_owned();
        if done.starts_with("FROM ") {
            stages.push((done, Vec::new()));
        } else if let Some((_, lines)) = stages.last_mut() {
            lines.push(done);
        }
    }
    stages
}

#[test]
fn default_target_is_the_minimal_image() {
    let dockerfile = read("Dockerfile");
    let stages = stages(&dockerfile);
    let (from, lines) = stages.last().expect("Dockerfile has stages");
    assert_eq!(
        from, "FROM scratch AS minimal",
        "the last stage is the default target"
    );
    // No shell in the image: nothing may need one at run time.
    for line in lines {
        assert!(!line.starts_with("RUN "), "{line}");
        if let Some(cmd) = line.strip_prefix("HEALTHCHECK ") {
            assert!(cmd.contains("CMD [\""), "exec form only: {line}");
        }
    }
    assert!(
        lines.iter().any(|l| l == "USER 65532:65532"),
        "numeric non-root user"
    );
    assert!(
        stages.iter().any(|(from, _)| from.ends_with(" AS debug")),
        "a debug target remains"
    );
}

#[test]
fn only_the_builder_runs_commands_so_no_stage_needs_emulation() {
    // Stages of the target platform may not RUN anything: for arm64 on an
    // amd64 builder that would need QEMU. The builder runs on the build
    // platform and cross-compiles.
    let dockerfile = read("Dockerfile");
    for (from, lines) in stages(&dockerfile) {
        let runs = lines.iter().any(|l| l.starts_with("RUN "));
        if from.contains("--platform=$BUILDPLATFORM") {
            assert!(from.ends_with(" AS builder"), "{from}");
        } else {
            assert!(!runs, "{from} runs commands on the target platform");
        }
    }
}

#[test]
fn builds_are_locked_and_auditable() {
    let dockerfile = read("Dockerfile");
    let builds: Vec<_> = dockerfile
        .lines()
        .filter(|l| l.contains("cargo ") && l.contains(" build"))
        .collect();
    assert!(!builds.is_empty());
    for line in builds {
        assert!(line.contains("cargo auditable build"), "{line}");
        assert!(line.contains("--locked"), "{line}");
    }
}
