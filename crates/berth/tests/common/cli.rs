//! `berth` run as a command (not a server), as a person would on the host.

use std::process::{Command, Output};

use super::server::BIN;

/// `berth ARGS` with none of the test's own `BERTH_*` environment.
pub fn berth_command(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("NO_COLOR", "1");
    for (key, _) in std::env::vars() {
        if key.starts_with("BERTH_") {
            cmd.env_remove(key);
        }
    }
    cmd.output().expect("run berth")
}

/// A command's status and output, for assertion messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
