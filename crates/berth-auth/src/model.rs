//! The permission model: actions, built-in roles, scopes, scope-map
//! actions, and the principal a request runs as.

use serde::{Deserialize, Serialize};

/// A registry action, named by its role-definition string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Permission {
    #[serde(rename = "registries/pull/read")]
    Pull,
    #[serde(rename = "registries/push/write")]
    Push,
    #[serde(rename = "registries/artifacts/delete")]
    Delete,
    #[serde(rename = "registries/metadata/read")]
    MetadataRead,
    #[serde(rename = "registries/metadata/write")]
    MetadataWrite,
    #[serde(rename = "registries/catalog/read")]
    CatalogRead,
    #[serde(rename = "registries/manage/read")]
    ManageRead,
    #[serde(rename = "registries/manage/write")]
    ManageWrite,
    #[serde(rename = "roleAssignments/write")]
    RoleAssignmentsWrite,
}

impl Permission {
    pub const ALL: [Permission; 9] = [
        Permission::Pull,
        Permission::Push,
        Permission::Delete,
        Permission::MetadataRead,
        Permission::MetadataWrite,
        Permission::CatalogRead,
        Permission::ManageRead,
        Permission::ManageWrite,
        Permission::RoleAssignmentsWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Pull => "registries/pull/read",
            Permission::Push => "registries/push/write",
            Permission::Delete => "registries/artifacts/delete",
            Permission::MetadataRead => "registries/metadata/read",
            Permission::MetadataWrite => "registries/metadata/write",
            Permission::CatalogRead => "registries/catalog/read",
            Permission::ManageRead => "registries/manage/read",
            Permission::ManageWrite => "registries/manage/write",
            Permission::RoleAssignmentsWrite => "roleAssignments/write",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// What a person would call it in a message.
    pub fn verb(self) -> &'static str {
        match self {
            Permission::Pull => "pull from",
            Permission::Push => "push to",
            Permission::Delete => "delete from",
            Permission::MetadataRead => "read metadata of",
            Permission::MetadataWrite => "write metadata of",
            Permission::CatalogRead => "list the catalog of",
            Permission::ManageRead => "read the settings of",
            Permission::ManageWrite => "change the settings of",
            Permission::RoleAssignmentsWrite => "assign roles in",
        }
    }

    /// The scope-map action of a repository-scoped token.
    pub fn from_token_action(s: &str) -> Option<Permission> {
        match s {
            "content/read" => Some(Permission::Pull),
            "content/write" => Some(Permission::Push),
            "content/delete" => Some(Permission::Delete),
            "metadata/read" => Some(Permission::MetadataRead),
            "metadata/write" => Some(Permission::MetadataWrite),
            _ => None,
        }
    }
}

pub const TOKEN_ACTIONS: [&str; 5] = [
    "content/read",
    "content/write",
    "content/delete",
    "metadata/read",
    "metadata/write",
];

/// A role: a named set of permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub description: String,
    pub builtin: bool,
    pub permissions: Vec<Permission>,
}

/// The built-in roles, in the order `berth role definition list` shows them.
pub fn builtin_roles() -> Vec<(&'static str, &'static str, Vec<Permission>)> {
    use Permission::*;
    vec![
        ("AcrPull", "Pull artifacts", vec![Pull, MetadataRead]),
        (
            "AcrPush",
            "Push and pull artifacts",
            vec![Pull, Push, MetadataRead, MetadataWrite],
        ),
        ("AcrDelete", "Delete artifacts", vec![Delete, MetadataRead]),
        (
            "Reader",
            "Read registry settings, list the catalog, pull",
            vec![ManageRead, MetadataRead, CatalogRead, Pull],
        ),
        (
            "Contributor",
            "Everything except assigning roles",
            Permission::ALL
                .into_iter()
                .filter(|p| *p != RoleAssignmentsWrite)
                .collect(),
        ),
        ("Owner", "Everything", Permission::ALL.to_vec()),
    ]
}

/// Where a role assignment or scope-map rule applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    Registry,
    Repository(String),
    /// `app/*`: every repository under `app/`.
    Prefix(String),
}

impl Scope {
    /// `""` or `"/"` is the registry; `app/*` a prefix; anything else one
    /// repository.
    pub fn parse(s: &str) -> Result<Scope, String> {
        let s = s.trim();
        if s.is_empty() || s == "/" || s == "*" {
            return Ok(Scope::Registry);
        }
        if let Some(prefix) = s.strip_suffix("/*") {
            prefix
                .parse::<berth_types::RepositoryName>()
                .map_err(|e| format!("scope '{s}': {e}"))?;
            return Ok(Scope::Prefix(format!("{prefix}/")));
        }
        s.parse::<berth_types::RepositoryName>()
            .map_err(|e| format!("scope '{s}': {e}"))?;
        Ok(Scope::Repository(s.to_string()))
    }

    /// Registry-wide actions (`repository` None) match only registry scope.
    pub fn covers(&self, repository: Option<&str>) -> bool {
        match (self, repository) {
            (Scope::Registry, _) => true,
            (Scope::Repository(r), Some(repo)) => r == repo,
            (Scope::Prefix(p), Some(repo)) => repo.starts_with(p.as_str()),
            _ => false,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Registry => f.write_str("/"),
            Scope::Repository(r) => f.write_str(r),
            Scope::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub permission: Permission,
    pub scope: Scope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    Owner,
    Admin,
    #[serde(rename = "sp")]
    ServicePrincipal,
    Token,
    Anonymous,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Owner => "owner",
            IdentityKind::Admin => "admin",
            IdentityKind::ServicePrincipal => "sp",
            IdentityKind::Token => "token",
            IdentityKind::Anonymous => "anonymous",
        }
    }

    pub fn parse(s: &str) -> Option<IdentityKind> {
        [
            IdentityKind::Owner,
            IdentityKind::Admin,
            IdentityKind::ServicePrincipal,
            IdentityKind::Token,
            IdentityKind::Anonymous,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    pub fn describe(self) -> &'static str {
        match self {
            IdentityKind::Owner => "owner",
            IdentityKind::Admin => "admin user",
            IdentityKind::ServicePrincipal => "service principal",
            IdentityKind::Token => "token",
            IdentityKind::Anonymous => "anonymous",
        }
    }
}

/// Who a request runs as and what it may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub id: String,
    pub kind: IdentityKind,
    pub login: String,
    /// Display name (a service principal's `--name`).
    pub name: String,
    pub trusted_service: bool,
    pub grants: Vec<Grant>,
    /// A token's scope map: where its rights come from (never roles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_map: Option<String>,
    /// Unix time past which nothing issued for this principal may be
    /// valid (the federated or refresh token it signed in with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
    /// How it signed in, when that is worth recording (a federated
    /// credential: issuer and subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

impl Principal {
    pub fn anonymous(pull_enabled: bool) -> Principal {
        Principal {
            id: String::new(),
            kind: IdentityKind::Anonymous,
            login: "anonymous".into(),
            name: "anonymous".into(),
            trusted_service: false,
            scope_map: None,
            not_after: None,
            via: None,
            grants: if pull_enabled {
                vec![Grant {
                    permission: Permission::Pull,
                    scope: Scope::Registry,
                }]
            } else {
                Vec::new()
            },
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.kind == IdentityKind::Anonymous
    }

    pub fn allows(&self, permission: Permission, repository: Option<&str>) -> bool {
        self.grants
            .iter()
            .any(|g| g.permission == permission && g.scope.covers(repository))
    }

    /// "service principal 'ci' (1c2d...)" for messages.
    pub fn describe(&self) -> String {
        let who = match self.kind {
            IdentityKind::Anonymous => "anonymous".into(),
            IdentityKind::ServicePrincipal => {
                format!(
                    "{} '{}' (app id {})",
                    self.kind.describe(),
                    self.name,
                    self.login
                )
            }
            _ => format!("{} '{}'", self.kind.describe(), self.login),
        };
        match &self.via {
            Some(via) => format!("{who} via {via}"),
            None => who,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_cover_what_they_name() {
        let prefix = Scope::parse("app/*").expect("prefix");
        assert!(prefix.covers(Some("app/web")));
        assert!(prefix.covers(Some("app/web/x")));
        assert!(!prefix.covers(Some("app")));
        assert!(!prefix.covers(Some("apps/web")));
        assert!(!prefix.covers(None));
        let repo = Scope::parse("app/web").expect("repo");
        assert!(repo.covers(Some("app/web")));
        assert!(!repo.covers(Some("app/web2")));
        assert!(Scope::parse("").expect("registry").covers(None));
        assert!(Scope::parse("../x").is_err());
        assert!(Scope::parse("UP/*").is_err());
    }

    #[test]
    fn roles_and_actions() {
        let roles = builtin_roles();
        let push = &roles.iter().find(|r| r.0 == "AcrPush").expect("AcrPush").2;
        assert!(push.contains(&Permission::Push) && push.contains(&Permission::Pull));
        let contributor = &roles.iter().find(|r| r.0 == "Contributor").expect("c").2;
        assert!(!contributor.contains(&Permission::RoleAssignmentsWrite));
        assert_eq!(
            Permission::parse("registries/pull/read"),
            Some(Permission::Pull)
        );
        assert_eq!(Permission::parse("registries/pull"), None);
        assert_eq!(
            Permission::from_token_action("content/write"),
            Some(Permission::Push)
        );
    }
}
