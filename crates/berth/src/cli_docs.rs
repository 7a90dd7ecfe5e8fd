//! Shell completions and man pages, generated from the command-line
//! definition itself so they never drift from `--help`.

use std::path::Path;

use anyhow::Context;

/// The shells `berth completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// `berth completions SHELL`: the script on standard output.
pub fn completions(mut command: clap::Command, shell: Shell) -> anyhow::Result<()> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "berth", &mut out);
    crate::output::emit(&String::from_utf8_lossy(&out));
    Ok(())
}

/// `berth man`: the top page on standard output, or every page into `dir`.
pub fn man(command: clap::Command, dir: Option<&Path>) -> anyhow::Result<()> {
    let command = command.version(crate::VERSION);
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            crate::output::outln!("man pages written to {}", dir.display());
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut out)
                .context("cannot render the man page")?;
            crate::output::emit(&String::from_utf8_lossy(&out));
        }
    }
    Ok(())
}
