//! `berth-bench`: see the library's documentation and docs/performance.md.

fn main() -> std::process::ExitCode {
    berth_bench::cli::main()
}
