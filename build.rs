//! Sets `SIE_REVISION` (the `revision` of `system_info_exporter_build_info`)
//! to the git commit when building from a checkout, unless it is set already
//! (the Makefile and the Dockerfile set it; a container build has no .git).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    output.status.success().then(|| text.trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=SIE_REVISION");
    if std::env::var_os("SIE_REVISION").is_some() {
        return;
    }
    let Some(revision) = git(&["rev-parse", "--short", "HEAD"]) else {
        return;
    };
    println!("cargo:rustc-env=SIE_REVISION={revision}");
    // Build again when HEAD moves: a commit changes the branch's ref file.
    let head = git(&["rev-parse", "--git-path", "HEAD"]);
    let branch =
        git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r]));
    let packed = git(&["rev-parse", "--git-path", "packed-refs"]);
    for path in [head, branch, packed].into_iter().flatten() {
        println!("cargo:rerun-if-changed={path}");
    }
}
