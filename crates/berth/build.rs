//! Records the commit the binary is built from, for `berth --version`,
//! the startup log and the image labels. Out of a git checkout (a source
//! tarball) `BERTH_COMMIT` may be set by the packager; otherwise "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=BERTH_COMMIT");
    let commit = match std::env::var("BERTH_COMMIT") {
        Ok(c) if !c.is_empty() => c,
        _ => match git(&["rev-parse", "--short=12", "HEAD"]) {
            Some(head) => {
                // A new commit, a checkout or a `git add` changes these.
                if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
                    for file in ["HEAD", "index", "packed-refs"] {
                        println!("cargo:rerun-if-changed={dir}/{file}");
                    }
                    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
                        println!("cargo:rerun-if-changed={dir}/{reference}");
                    }
                }
                // Any source change may make the tree differ from HEAD.
                println!("cargo:rerun-if-changed=../../crates");
                println!("cargo:rerun-if-changed=../../Cargo.lock");
                let modified = git(&["status", "--porcelain", "--untracked-files=no"])
                    .is_some_and(|s| !s.is_empty());
                if modified {
                    format!("{head}-modified")
                } else {
                    head
                }
            }
            None => "unknown".to_string(),
        },
    };
    println!("cargo:rustc-env=BERTH_COMMIT={commit}");
}
