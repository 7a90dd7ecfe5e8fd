//! `berth explain`: the registry's decision trace for a request.

use clap::Args;

use berth_manage::explain;

use super::json_of;
use crate::client::{Client, ClientArgs};
use crate::output::{outln, print, Format};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The client address to evaluate.
    #[arg(long)]
    pub ip: String,
    /// `public` or `private:NAME`.
    #[arg(long, default_value = "public")]
    pub endpoint: String,
    /// App id, token name or login (omit for anonymous).
    #[arg(long)]
    pub identity: Option<String>,
    /// What the request would do.
    #[arg(long, value_enum, ignore_case = true)]
    pub action: ExplainAction,
    /// The repository the request is for (all actions but catalog).
    #[arg(long)]
    pub repository: Option<String>,
}

/// The kind of request `explain` evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExplainAction {
    /// Pull a manifest or blob.
    Pull,
    /// Push a manifest or blob.
    Push,
    /// Delete a manifest, tag or blob.
    Delete,
    /// List the catalog of repositories.
    Catalog,
}

/// Asks the registry for its decision trace.
pub async fn explain(args: &ClientArgs, e: &ExplainArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.connection()).await?;
    let action = match e.action {
        ExplainAction::Pull => explain::ExplainAction::Pull,
        ExplainAction::Push => explain::ExplainAction::Push,
        ExplainAction::Delete => explain::ExplainAction::Delete,
        ExplainAction::Catalog => explain::ExplainAction::Catalog,
    };
    let answer = client
        .send(&explain::Explain {
            ip: e.ip.clone(),
            endpoint: Some(e.endpoint.clone()),
            identity: e.identity.clone(),
            action,
            repository: e.repository.clone(),
        })
        .await?;
    if args.output == Format::Json {
        print(&json_of(&answer), &[], args.output);
    } else {
        let a = &answer.access;
        let n = &answer.network;
        outln!("verdict:   {}", answer.verdict);
        outln!(
            "network:   {} on {} endpoint: {}",
            if n.allowed { "allowed" } else { "DENIED" },
            n.endpoint,
            n.reason.as_deref().unwrap_or(&n.rule)
        );
        let problem = a.identity_problem.as_deref();
        match &a.identity {
            Some(i) => outln!(
                "identity:  {} '{}' ({}){}",
                i.kind,
                i.name,
                i.id,
                problem.map(|p| format!(" — {p}")).unwrap_or_default()
            ),
            None => outln!("identity:  {}", problem.unwrap_or("anonymous")),
        }
        outln!("granted by: {}", a.granted_by.join("; "));
        if !a.other_assignments.is_empty() {
            outln!(
                "other grants (not covering this): {}",
                a.other_assignments.join("; ")
            );
        }
        if let Some(missing) = &a.missing {
            outln!("missing:   {missing}");
        }
        if !a.federated_credentials.is_empty() {
            outln!("federated credentials (tokens that sign in as it):");
            for f in &a.federated_credentials {
                outln!(
                    "  {}: issuer {}, subject {}, audience {}",
                    f.name,
                    f.issuer,
                    f.subject,
                    f.audience
                );
            }
        }
        if let Some(c) = &answer.cache {
            match &c.rule {
                Some(rule) => {
                    outln!("cache:     cached by rule '{rule}' (read-only to clients)");
                    for u in &c.upstreams {
                        outln!(
                            "  upstream {}{}: {}{}",
                            u.upstream,
                            u.credential_set
                                .as_deref()
                                .map(|s| format!(" (credential set {s})"))
                                .unwrap_or_default(),
                            if u.ok { "ok — " } else { "FAILING — " },
                            u.detail
                        );
                    }
                }
                None => outln!(
                    "cache:     no cache rule targets this repository (rule targets: {})",
                    c.targets.join(", ")
                ),
            }
        }
        if !a.orphaned_assignments.is_empty() {
            outln!("orphaned assignments (principal deleted; they grant nothing):");
            for o in &a.orphaned_assignments {
                outln!(
                    "  {} role {} at {} for deleted principal {}",
                    o.id,
                    o.role,
                    o.scope,
                    o.principal_id
                );
            }
        }
    }
    if !answer.allowed {
        std::process::exit(2);
    }
    Ok(())
}
