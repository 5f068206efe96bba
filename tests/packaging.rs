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
