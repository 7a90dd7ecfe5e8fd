//! The `berth` binary: `berth serve` runs the registry; other subcommands
//! are clients of a running one.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod config;
mod serve;

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "A container registry: the OCI distribution API with embedded storage in one binary",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the registry server.
    ///
    /// With no options it listens on 127.0.0.1:5000 and keeps blobs under
    /// ./berth-data/blobs and metadata in ./berth-data/berth.db. Every
    /// configuration key can also be set by environment, e.g.
    /// BERTH_SERVER__LISTEN=0.0.0.0:5000 or BERTH_GC__INTERVAL_SECONDS=600.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides [server] listen); port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Data directory for embedded storage (overrides data_dir).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Log format: text or json (overrides [log] format).
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
    }
}
