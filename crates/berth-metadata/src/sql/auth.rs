//! [`AuthStore`] for both SQL backends, written once: the SQL is the common
//! dialect of SQLite and PostgreSQL (`$n` placeholders, `CAST(.. AS TEXT)`
//! for untyped NULL checks, flags as integers).

macro_rules! impl_auth_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use sqlx::{Row, Transaction};
            use $crate::auth::{
                Activity, ActivityRecord, AuthStore, CredentialRecord,
                FederatedCredentialRecord, IdentityRecord,
                RoleAssignmentRecord, RoleDefinitionRecord, ScopeMapRecord, SigningKeyRecord,
            };
            use $crate::MetadataError;
            use berth_util::now;

            type Db = $db;
            type DbRow = <$db as sqlx::Database>::Row;

const IDENTITY_COLUMNS: &str =
    "id, kind, login, display_name, enabled, trusted_service, scope_map, created_at";

fn identity(row: &DbRow) -> Result<IdentityRecord, MetadataError> {
    Ok(IdentityRecord {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        login: row.try_get("login")?,
        display_name: row.try_get("display_name")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        trusted_service: row.try_get::<i64, _>("trusted_service")? != 0,
        scope_map: row.try_get("scope_map")?,
        created_at: row.try_get("created_at")?,
    })
}

fn credential(row: &DbRow) -> Result<CredentialRecord, MetadataError> {
    Ok(CredentialRecord {
        identity_id: row.try_get("identity_id")?,
        name: row.try_get("name")?,
        hash: row.try_get("hash")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

const FEDERATED_COLUMNS: &str =
    "identity_id, name, issuer, subject, audience, jwks, ca_pem, created_at";

fn federated(row: &DbRow) -> Result<FederatedCredentialRecord, MetadataError> {
    Ok(FederatedCredentialRecord {
        identity_id: row.try_get("identity_id")?,
        name: row.try_get("name")?,
        issuer: row.try_get("issuer")?,
        subject: row.try_get("subject")?,
        audience: row.try_get("audience")?,
        jwks: row.try_get("jwks")?,
        ca_pem: row.try_get("ca_pem")?,
        created_at: row.try_get("created_at")?,
    })
}

fn scope_map(row: &DbRow) -> Result<ScopeMapRecord, MetadataError> {
    Ok(ScopeMapRecord {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        rules_json: row.try_get("rules")?,
        created_at: row.try_get("created_at")?,
    })
}

async fn log(tx: &mut Transaction<'_, Db>, a: &Activity) -> Result<(), MetadataError> {
    sqlx::query(
        "INSERT INTO activity_log (time, actor, operation, target, before, after) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(now())
    .bind(&a.actor)
    .bind(&a.operation)
    .bind(&a.target)
    .bind(&a.before)
    .bind(&a.after)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Runs one change and, if it changed anything, records `activity`, in
/// one transaction. Returns the rows changed.
impl $store {
    async fn logged<'q>(
        &self,
        change: sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>,
        activity: &Activity,
    ) -> Result<u64, MetadataError> {
        let mut tx = self.writer.begin().await?;
        let changed = change.execute(&mut *tx).await?.rows_affected();
        if changed > 0 {
            log(&mut tx, activity).await?;
            tx.commit().await?;
        }
        Ok(changed)
    }
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait]
impl AuthStore for $store {
    async fn setting(&self, key: &str) -> Result<Option<String>, MetadataError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.writer)
                .await?,
        )
    }

    async fn set_setting(
        &self,
        key: &str,
        value: &str,
        activity: &Activity,
    ) -> Result<(), MetadataError> {
        self.logged(
            sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value),
            activity,
        )
        .await?;
        Ok(())
    }

    async fn replace_setting(
        &self,
        key: &str,
        expected: Option<&str>,
        value: &str,
        activity: &Activity,
    ) -> Result<bool, MetadataError> {
        let changed = match expected {
            None => {
                self.logged(
                    sqlx::query(
                        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                    )
                    .bind(key)
                    .bind(value),
                    activity,
                )
                .await?
            }
            Some(expected) => {
                self.logged(
                    sqlx::query("UPDATE settings SET value = $1 WHERE key = $2 AND value = $3")
                        .bind(value)
                        .bind(key)
                        .bind(expected),
                    activity,
                )
                .await?
            }
        };
        Ok(changed > 0)
    }

    async fn last_activity_id(&self) -> Result<i64, MetadataError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(max(id), CAST(0 AS BIGINT)) FROM activity_log")
                .fetch_one(&self.writer)
                .await?,
        )
    }

    async fn identity_by_login(
        &self,
        login: &str,
    ) -> Result<Option<IdentityRecord>, MetadataError> {
        let row = sqlx::query(&format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities WHERE login = $1"
        ))
        .bind(login)
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref().map(identity).transpose()
    }

    async fn identity_by_id(&self, id: &str) -> Result<Option<IdentityRecord>, MetadataError> {
        let row = sqlx::query(&format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref().map(identity).transpose()
    }

    async fn identities(&self, kind: Option<&str>) -> Result<Vec<IdentityRecord>, MetadataError> {
        let rows = sqlx::query(&format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities WHERE (CAST($1 AS TEXT) IS NULL OR kind = $2) ORDER BY created_at, login"
        ))
        .bind(kind)
        .bind(kind)
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(identity).collect()
    }

    async fn create_identity(
        &self,
        i: &IdentityRecord,
        credentials: &[CredentialRecord],
        activity: &Activity,
    ) -> Result<(), MetadataError> {
        let mut tx = self.writer.begin().await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO identities ({IDENTITY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&i.id)
        .bind(&i.kind)
        .bind(&i.login)
        .bind(&i.display_name)
        .bind(i64::from(i.enabled))
        .bind(i64::from(i.trusted_service))
        .bind(&i.scope_map)
        .bind(i.created_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if unique_violation(&e) => {
                return Err(MetadataError::AlreadyExists(format!(
                    "identity '{}'",
                    i.login
                )))
            }
            other => {
                other?;
            }
        }
        for c in credentials {
            sqlx::query(
                "INSERT INTO credentials (identity_id, name, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&c.identity_id)
            .bind(&c.name)
            .bind(&c.hash)
            .bind(c.created_at)
            .bind(c.expires_at)
            .execute(&mut *tx)
            .await?;
        }
        log(&mut tx, activity).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_identity(
        &self,
        i: &IdentityRecord,
        activity: &Activity,
    ) -> Result<(), MetadataError> {
        self.logged(
            sqlx::query(
            "UPDATE identities SET display_name = $1, enabled = $2, trusted_service = $3, scope_map = $4 WHERE id = $5",
        )
        .bind(&i.display_name)
        .bind(i64::from(i.enabled))
        .bind(i64::from(i.trusted_service))
        .bind(&i.scope_map)
        .bind(&i.id),
            activity,
        )
        .await?;
        Ok(())
    }

    async fn delete_identity(&self, id: &str, activity: &Activity) -> Result<bool, MetadataError> {
        Ok(self
            .logged(
                sqlx::query("DELETE FROM identities WHERE id = $1").bind(id),
                activity,
            )
            .await?
            > 0)
    }

    async fn credentials(&self, identity_id: &str) -> Result<Vec<CredentialRecord>, MetadataError> {
        let rows = sqlx::query(
            "SELECT identity_id, name, hash, created_at, expires_at FROM credentials WHERE identity_id = $1 ORDER BY name",
        )
        .bind(identity_id)
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(credential).collect()
    }

    async fn put_credential(
        &self,
        c: &CredentialRecord,
        activity: &Activity,
    ) -> Result<(), MetadataError> {
        self.logged(
            sqlx::query(
            "INSERT INTO credentials (identity_id, name, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (identity_id, name) DO UPDATE SET hash = excluded.hash,
                 created_at = excluded.created_at, expires_at = excluded.expires_at",
        )
        .bind(&c.identity_id)
        .bind(&c.name)
        .bind(&c.hash)
        .bind(c.created_at)
        .bind(c.expires_at),
            activity,
        )
        .await?;
        Ok(())
    }

    async fn federated_credentials(
        &self,
        identity_id: Option<&str>,
    ) -> Result<Vec<FederatedCredentialRecord>, MetadataError> {
        let rows = sqlx::query(&format!(
            "SELECT {FEDERATED_COLUMNS} FROM federated_credentials
             WHERE (CAST($1 AS TEXT) IS NULL OR identity_id = $1) ORDER BY identity_id, name"
        ))
        .bind(identity_id)
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(federated).collect()
    }

    async fn federated_credentials_of_issuer(
        &self,
        issuer: &str,
    ) -> Result<Vec<FederatedCredentialRecord>, MetadataError> {
        // Every exchange reads this: an index on (issuer, subject) serves it.
        let rows = sqlx::query(&format!(
            "SELECT {FEDERATED_COLUMNS} FROM federated_credentials WHERE issuer = $1 ORDER BY identity_id, name"
        ))
        .bind(issuer)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(federated).collect()
    }

    async fn create_federated_credential(
        &self,
        c: &FederatedCredentialRecord,
        activity: &Activity,
    ) -> Result<(), MetadataError> {
        let result = self
            .logged(
                sqlx::query(
                    "INSERT INTO federated_credentials
                     (identity_id, name, issuer, subject, audience, jwks, ca_pem, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&c.identity_id)
                .bind(&c.name)
                .bind(&c.issuer)
                .bind(&c.subject)
                .bind(&c.audience)
                .bind(&c.jwks)
                .bind(&c.ca_pem)
                .bind(c.created_at),
                activity,
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(MetadataError::Database(e)) if unique_violation(&e) => Err(
                MetadataError::AlreadyExists(format!("federated credential '{}'", c.name)),
            ),
            Err(e) => Err(e),
        }
    }

    async fn delete_federated_credential(
        &self,
        identity_id: &str,
        name: &str,
        activity: &Activity,
    ) -> Result<bool, MetadataError> {
        Ok(self
            .logged(
                sqlx::query(
                    "DELETE FROM federated_credentials WHERE identity_id = $1 AND name = $2",
                )
                .bind(identity_id)
                .bind(name),
                activity,
            )
            .await?
            > 0)
    }

    async fn scope_map(&self, name: &str) -> Result<Option<ScopeMapRecord>, MetadataError> {
        let row = sqlx::query(
            "SELECT name, description, rules, created_at FROM scope_maps WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref().map(scope_map).transpose()
    }

    async fn scope_maps(&self) -> Result<Vec<ScopeMapRecord>, MetadataError> {
        let rows = sqlx::query(
            "SELECT name, description, rules, created_at FROM scope_maps ORDER BY name",
        )
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(scope_map).collect()
    }

    async fn put_scope_map(
        &self,
        m: &ScopeMapRecord,
        activity: &Activity,
    ) -> Result<(), MetadataError> {
        self.logged(
            sqlx::query(
            "INSERT INTO scope_maps (name, description, rules, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET description = excluded.description, rules = excluded.rules",
        )
        .bind(&m.name)
        .bind(&m.description)
        .bind(&m.rules_json)
        .bind(m.created_at),
            activity,
        )
        .await?;
        Ok(())
    }

    async fn delete_scope_map(
        &self,
        name: &str,
        activity: &Activity,
    ) -> Result<bool, MetadataError> {
        Ok(self
            .logged(
                // One statement, so no token can start using the map
                // between the check and the delete.
                sqlx::query(
                    "DELETE FROM scope_maps WHERE name = $1 \
                     AND NOT EXISTS (SELECT 1 FROM identities WHERE kind = 'token' AND scope_map = $1)",
                )
                .bind(name),
                activity,
            )
            .await?
            > 0)
    }

    async fn role_definitions(&self) -> Result<Vec<RoleDefinitionRecord>, MetadataError> {
        let rows = sqlx::query(
            "SELECT name, description, actions, created_at FROM role_definitions ORDER BY name",
        )
        .fetch_all(&self.writer)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RoleDefinitionRecord {
                    name: row.try_get("name")?,
                    description: row.try_get("description")?,
                    actions_json: row.try_get("actions")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn put_role_definition(
        &self,
        r: &RoleDefinitionRecord,
        activity: &Activity,
    ) -> Result<(), MetadataError> {
        self.logged(
            sqlx::query(
            "INSERT INTO role_definitions (name, description, actions, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET description = excluded.description, actions = excluded.actions",
        )
        .bind(&r.name)
        .bind(&r.description)
        .bind(&r.actions_json)
        .bind(r.created_at),
            activity,
        )
        .await?;
        Ok(())
    }

    async fn role_assignments(
        &self,
        principal_id: Option<&str>,
    ) -> Result<Vec<RoleAssignmentRecord>, MetadataError> {
        let rows = sqlx::query(
            "SELECT id, principal_id, role, scope, created_at FROM role_assignments
             WHERE (CAST($1 AS TEXT) IS NULL OR principal_id = $2) ORDER BY created_at, id",
        )
        .bind(principal_id)
        .bind(principal_id)
        .fetch_all(&self.writer)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RoleAssignmentRecord {
                    id: row.try_get("id")?,
                    principal_id: row.try_get("principal_id")?,
                    role: row.try_get("role")?,
                    scope: row.try_get("scope")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn create_role_assignment(
        &self,
        a: &RoleAssignmentRecord,
        activity: &Activity,
    ) -> Result<(), MetadataError> {
        self.logged(
            sqlx::query(
            "INSERT INTO role_assignments (id, principal_id, role, scope, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&a.id)
        .bind(&a.principal_id)
        .bind(&a.role)
        .bind(&a.scope)
        .bind(a.created_at),
            activity,
        )
        .await?;
        Ok(())
    }

    async fn delete_role_assignment(
        &self,
        id: &str,
        activity: &Activity,
    ) -> Result<bool, MetadataError> {
        Ok(self
            .logged(
                sqlx::query("DELETE FROM role_assignments WHERE id = $1").bind(id),
                activity,
            )
            .await?
            > 0)
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, MetadataError> {
        let rows =
            sqlx::query("SELECT kid, pkcs8, created_at FROM signing_keys ORDER BY created_at")
                .fetch_all(&self.writer)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(SigningKeyRecord {
                    kid: row.try_get("kid")?,
                    pkcs8: row.try_get("pkcs8")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn add_signing_key(&self, key: &SigningKeyRecord) -> Result<(), MetadataError> {
        sqlx::query("INSERT INTO signing_keys (kid, pkcs8, created_at) VALUES ($1, $2, $3)")
            .bind(&key.kid)
            .bind(&key.pkcs8)
            .bind(key.created_at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn activities(
        &self,
        since: i64,
        limit: u32,
    ) -> Result<Vec<ActivityRecord>, MetadataError> {
        let rows = sqlx::query(
            "SELECT id, time, actor, operation, target, before, after FROM activity_log
             WHERE time >= $1 ORDER BY id LIMIT $2",
        )
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ActivityRecord {
                    id: row.try_get("id")?,
                    time: row.try_get("time")?,
                    activity: Activity {
                        actor: row.try_get("actor")?,
                        operation: row.try_get("operation")?,
                        target: row.try_get("target")?,
                        before: row.try_get("before")?,
                        after: row.try_get("after")?,
                    },
                })
            })
            .collect()
    }

    async fn purge_activities(&self, before: i64) -> Result<u64, MetadataError> {
        let done = sqlx::query("DELETE FROM activity_log WHERE time < $1")
            .bind(before)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }
}
        };
    };
}

pub(crate) use impl_auth_store;
