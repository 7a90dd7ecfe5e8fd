//! The audit logs (`berth logs`) and the activity log (`berth activity`).

use clap::{Args, Subcommand};
use serde_json::json;

use berth_manage::logs;

use super::{json_of, now};
use crate::client::{Client, ClientArgs};
use crate::output::{print, Format};
use crate::output::{print_json, summarise_change};

/// `--since`: how far back (a duration) or from when (a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This long before now.
    Ago(std::time::Duration),
    /// From this time on (unix seconds).
    At(i64),
}

const SINCE_FORMS: &str =
    "a duration such as 30m, 24h, 7d or 1h30m, or an RFC 3339 time such as 2026-12-01T00:00:00Z";

/// Parses `--since`: a duration (humantime: `24h`, `7d`, `1h30m`, `90s`)
/// or an RFC 3339 time (`2026-12-01T00:00:00Z`, `2026-12-01T01:00:00+01:00`).
pub fn parse_since(s: &str) -> Result<Since, String> {
    let s = s.trim();
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(Since::Ago(d));
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(Since::At(t.unix_timestamp()));
    }
    Err(format!("'{s}' is not {SINCE_FORMS}"))
}

impl Since {
    /// The start as unix seconds, `now` being unix seconds.
    pub fn unix_seconds(self, now: i64) -> i64 {
        match self {
            Since::Ago(d) => now.saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            Since::At(t) => t,
        }
    }
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// How far back (24h, 7d, 30m, 1h30m) or since when (RFC 3339, e.g.
    /// 2026-12-01T00:00:00Z).
    /// [default: 24h; with --correlation-id, the whole retention period]
    #[arg(long, value_parser = parse_since)]
    pub since: Option<Since>,
    /// Only failures (status 400 and above).
    #[arg(long)]
    pub failed: bool,
    /// Only this identity (as the events name it).
    #[arg(long)]
    pub identity: Option<String>,
    /// Only the events of one request: the `x-correlation-id` a client
    /// received, or the id in an error message (searches the whole
    /// retention period unless --since is given).
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// At most this many events, newest first.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

impl LogArgs {
    /// `--since` as the API takes it: 24 hours back unless a correlation
    /// id is asked for, which is searched for over the whole retention.
    fn since_time(&self) -> Option<String> {
        match (self.since, &self.correlation_id) {
            (Some(since), _) => Some(since_time(since)),
            (None, Some(_)) => None,
            (None, None) => Some(since_time(Since::Ago(std::time::Duration::from_secs(
                86400,
            )))),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Login events: every token request, Basic login and network denial.
    Login(LogArgs),
    /// Repository events: push, pull, delete, untag.
    Repository {
        #[command(flatten)]
        args: LogArgs,
        /// Only this repository.
        #[arg(long)]
        repository: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ActivityCommand {
    /// List management changes (the table shows what changed; `-o json`
    /// has the whole before and after).
    List {
        /// How far back (24h, 7d, 30m, 1h30m) or since when (RFC 3339, e.g.
        /// 2026-12-01T00:00:00Z).
        #[arg(long, default_value = "24h", value_parser = parse_since)]
        since: Since,
    },
}

/// `--since` as the RFC 3339 time the API takes.
fn since_time(since: Since) -> String {
    berth_util::rfc3339(since.unix_seconds(now()))
}

pub async fn logs(args: &ClientArgs, command: &LogsCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection()).await?;
    match command {
        LogsCommand::Login(a) => {
            let events = client
                .send(&logs::ListLoginEvents {
                    since: a.since_time(),
                    failed: a.failed,
                    identity: a.identity.clone(),
                    correlation_id: a.correlation_id.clone(),
                    limit: Some(a.limit),
                })
                .await?;
            print(
                &json_of(events),
                &[
                    ("TIME", "/timeGenerated"),
                    ("IDENTITY", "/identity"),
                    ("CALLER IP", "/callerIpAddress"),
                    ("OPERATION", "/operationName"),
                    ("RESULT", "/resultType"),
                    ("DESCRIPTION", "/resultDescription"),
                    ("CORRELATION ID", "/correlationId"),
                ],
                args.output,
            );
        }
        LogsCommand::Repository {
            args: a,
            repository,
        } => {
            let events = client
                .send(&logs::ListRepositoryEvents {
                    since: a.since_time(),
                    failed: a.failed,
                    identity: a.identity.clone(),
                    repository: repository.clone(),
                    correlation_id: a.correlation_id.clone(),
                    limit: Some(a.limit),
                })
                .await?;
            print(
                &json_of(events),
                &[
                    ("TIME", "/timeGenerated"),
                    ("OPERATION", "/operationName"),
                    ("REPOSITORY", "/repository"),
                    ("TAG", "/tag"),
                    ("DIGEST", "/digest"),
                    ("IDENTITY", "/identity"),
                    ("CALLER IP", "/callerIpAddress"),
                    ("RESULT", "/resultType"),
                    ("DESCRIPTION", "/resultDescription"),
                ],
                args.output,
            );
        }
    }
    Ok(())
}

pub async fn activity(args: &ClientArgs, command: &ActivityCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection()).await?;
    match command {
        ActivityCommand::List { since } => {
            let entries = client
                .send(&logs::ListActivity {
                    since: Some(since_time(*since)),
                    limit: None,
                })
                .await?;
            let mut entries = json_of(entries);
            if args.output == Format::Json {
                print_json(&entries);
                return Ok(());
            }
            // Whole before/after snapshots make rows hundreds of columns
            // wide: the table shows what changed.
            if let Some(list) = entries.as_array_mut() {
                for e in list {
                    e["changes"] = json!(summarise_change(e.get("before"), e.get("after")));
                }
            }
            print(
                &entries,
                &[
                    ("TIME", "/time"),
                    ("ACTOR", "/actor"),
                    ("OPERATION", "/operation"),
                    ("TARGET", "/target"),
                    ("CHANGES", "/changes"),
                ],
                args.output,
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        let ago = |s: &str| parse_since(s).map(|v| v.unix_seconds(1_000_000));
        assert_eq!(ago("24h"), Ok(1_000_000 - 86400));
        assert_eq!(ago("7d"), Ok(1_000_000 - 7 * 86400));
        assert_eq!(ago("30m"), Ok(1_000_000 - 1800));
        assert_eq!(ago("1h30m"), Ok(1_000_000 - 5400));
        assert_eq!(ago(" 90s "), Ok(1_000_000 - 90));
        assert_eq!(
            parse_since("2026-12-01T00:00:00Z"),
            Ok(Since::At(1_796_083_200))
        );
        assert_eq!(
            parse_since("2026-12-01T01:00:00+01:00"),
            Ok(Since::At(1_796_083_200))
        );
        for bad in ["x", "24", "5 parsecs", "2026-12-01", "yesterday"] {
            let e = parse_since(bad).expect_err(bad);
            assert!(
                e.contains("24h") && e.contains("RFC 3339") && e.contains(bad),
                "{e}"
            );
        }
    }
}
