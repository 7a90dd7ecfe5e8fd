//! Repositories and the garbage collector.

use clap::Subcommand;
use serde_json::{json, Value};

use berth_manage::{gc, repositories};

use super::json_of;
use crate::cli_error::invalid_argument;
use crate::client::{Client, ClientArgs};
use crate::output::{outln, print, Column, Format};

#[derive(Debug, Subcommand)]
pub enum GcCommand {
    /// Candidates waiting for the collector and the latest runs (from any
    /// node), with their progress.
    Status,
    /// Run a collection pass now on the node this command talks to.
    Run,
}

#[derive(Debug, Subcommand)]
pub enum RepositoryCommand {
    /// List repositories.
    List,
    /// List a repository's tags.
    ShowTags {
        /// The repository, e.g. app/web.
        #[arg(long)]
        repository: String,
    },
    /// List a repository's manifests with their tags.
    ShowManifests {
        /// The repository, e.g. app/web.
        #[arg(long)]
        repository: String,
    },
    /// Delete a repository with all its manifests and tags.
    Delete {
        /// The repository, e.g. app/web.
        #[arg(long)]
        repository: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Remove a tag; the manifest stays (by digest and under other tags).
    Untag {
        /// The repository, e.g. app/web.
        #[arg(long)]
        repository: String,
        /// The tag to remove, e.g. v1.
        #[arg(long)]
        tag: String,
    },
    /// Delete a manifest by digest, with every tag that points at it.
    DeleteManifest {
        /// The repository, e.g. app/web.
        #[arg(long)]
        repository: String,
        /// The manifest's digest, e.g. sha256:...
        #[arg(long)]
        digest: String,
    },
}

const GC_REPORT: &[Column] = &[
    ("EXAMINED", "/examined"),
    ("DELETED", "/blobsDeleted"),
    ("BYTES", "/bytesReclaimed"),
    ("UPLOADS PURGED", "/uploadsPurged"),
    ("STORAGE REQUESTS", "/storageRequests"),
];

pub async fn gc(args: &ClientArgs, command: &GcCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection()).await?;
    match command {
        GcCommand::Status => {
            let status = client.send(&gc::GetGcStatus {}).await?;
            if args.output == Format::Json {
                print(&json_of(&status), &[], args.output);
                return Ok(());
            }
            outln!(
                "queued candidates: {} (examined once their grace period of {} s has passed)",
                status.queued_candidates,
                status.grace_seconds
            );
            let columns: Vec<Column> = [
                ("RUN", "/id"),
                ("NODE", "/node"),
                ("STATE", "/state"),
                ("STARTED", "/startedAt"),
                ("MS", "/durationMs"),
            ]
            .into_iter()
            .chain(GC_REPORT.iter().copied())
            .chain([("ERROR", "/error")])
            .collect();
            print(&json_of(&status.runs), &columns, args.output);
        }
        GcCommand::Run => print(
            &json_of(client.send(&gc::RunGc {}).await?),
            GC_REPORT,
            args.output,
        ),
    }
    Ok(())
}

pub async fn repository(args: &ClientArgs, command: &RepositoryCommand) -> anyhow::Result<()> {
    let client = Client::new(&args.connection()).await?;
    match command {
        RepositoryCommand::List => {
            let repos = client.send(&repositories::ListRepositories {}).await?;
            if args.output == Format::Json {
                print(&json_of(&repos), &[], args.output);
            } else {
                let rows: Vec<Value> = repos.iter().map(|r| json!({ "name": r })).collect();
                print(&Value::Array(rows), &[("REPOSITORY", "/name")], args.output);
            }
        }
        RepositoryCommand::ShowTags { repository } => print(
            &json_of(
                client
                    .send(&repositories::ListTags {
                        repository: repository.clone(),
                    })
                    .await?,
            ),
            &[
                ("TAG", "/name"),
                ("DIGEST", "/digest"),
                ("MEDIA TYPE", "/mediaType"),
            ],
            args.output,
        ),
        RepositoryCommand::ShowManifests { repository } => print(
            &json_of(
                client
                    .send(&repositories::ListManifests {
                        repository: repository.clone(),
                    })
                    .await?,
            ),
            &[
                ("DIGEST", "/digest"),
                ("TAGS", "/tags"),
                ("MEDIA TYPE", "/mediaType"),
                ("ARTIFACT TYPE", "/artifactType"),
                ("SIZE", "/size"),
                ("CREATED", "/createdAt"),
            ],
            args.output,
        ),
        RepositoryCommand::Untag { repository, tag } => {
            client
                .send(&repositories::UntagManifest {
                    repository: repository.clone(),
                    tag: tag.clone(),
                })
                .await?;
            outln!("removed tag {repository}:{tag}");
        }
        RepositoryCommand::DeleteManifest { repository, digest } => {
            client
                .send(&repositories::DeleteManifest {
                    repository: repository.clone(),
                    digest: digest.clone(),
                })
                .await?;
            outln!("deleted manifest {repository}@{digest} and its tags");
        }
        RepositoryCommand::Delete { repository, yes } => {
            if !yes {
                return Err(invalid_argument(format!("deleting '{repository}' removes all its manifests and tags; repeat with --yes to confirm")));
            }
            let answer = client
                .send(&repositories::DeleteRepository {
                    repository: repository.clone(),
                })
                .await?;
            print(
                &json_of(answer),
                &[
                    ("REPOSITORY", "/repository"),
                    ("MANIFESTS DELETED", "/manifestsDeleted"),
                ],
                args.output,
            );
        }
    }
    Ok(())
}
