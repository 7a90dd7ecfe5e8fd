//! [`EventStore`] for both SQL backends, written once (see `sql/auth.rs`).

/// Rows per multi-row INSERT: 16 columns × 500 stays far below SQLite's
/// limit of 32,766 bound parameters (and PostgreSQL's 65,535).
pub(crate) const ROWS_PER_INSERT: usize = 500;

macro_rules! impl_event_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use sqlx::Row;
            use $crate::events::{EventFilter, EventStore, HourlyCount, LoginEvent, RepositoryEvent};
            use $crate::MetadataError;

#[async_trait]
impl EventStore for $store {
    async fn insert_events(
        &self,
        logins: &[LoginEvent],
        repositories: &[RepositoryEvent],
    ) -> Result<(), MetadataError> {
        // One multi-row INSERT per table and batch: a statement per event
        // would be a round trip to the database (for SQLite, to its worker
        // thread) per event, at the rate of every pull.
        let mut tx = self.writer.begin().await?;
        for chunk in logins.chunks($crate::sql::events::ROWS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO login_events (time, login_server, identity, caller_ip, user_agent, operation,
                   result_type, result_description, duration_ms, correlation_id, jwt_id) ",
            );
            insert.push_values(chunk, |mut row, e| {
                row.push_bind(e.time_generated)
                    .push_bind(&e.login_server)
                    .push_bind(&e.identity)
                    .push_bind(&e.caller_ip_address)
                    .push_bind(&e.user_agent)
                    .push_bind(&e.operation_name)
                    .push_bind(i64::from(e.result_type))
                    .push_bind(&e.result_description)
                    .push_bind(e.duration_ms as i64)
                    .push_bind(&e.correlation_id)
                    .push_bind(&e.jwt_id);
            });
            // Not kept prepared: each batch size is another statement.
            insert.build().persistent(false).execute(&mut *tx).await?;
        }
        for chunk in repositories.chunks($crate::sql::events::ROWS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO repository_events (time, login_server, operation, repository, tag, digest,
                   media_type, artifact_type, size, identity, caller_ip, user_agent, result_type,
                   result_description, duration_ms, correlation_id) ",
            );
            insert.push_values(chunk, |mut row, e| {
                row.push_bind(e.time_generated)
                    .push_bind(&e.login_server)
                    .push_bind(&e.operation_name)
                    .push_bind(&e.repository)
                    .push_bind(&e.tag)
                    .push_bind(&e.digest)
                    .push_bind(&e.media_type)
                    .push_bind(&e.artifact_type)
                    .push_bind(e.size.map(|s| s as i64))
                    .push_bind(&e.identity)
                    .push_bind(&e.caller_ip_address)
                    .push_bind(&e.user_agent)
                    .push_bind(i64::from(e.result_type))
                    .push_bind(&e.result_description)
                    .push_bind(e.duration_ms as i64)
                    .push_bind(&e.correlation_id);
            });
            // Not kept prepared: each batch size is another statement.
            insert.build().persistent(false).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn login_events(&self, f: &EventFilter) -> Result<Vec<LoginEvent>, MetadataError> {
        let rows = sqlx::query(
            "SELECT * FROM login_events WHERE time >= $1
               AND ($2 = 0 OR result_type >= 400)
               AND (CAST($3 AS TEXT) IS NULL OR identity = $4)
               AND (CAST($5 AS TEXT) IS NULL OR correlation_id = $6)
             ORDER BY id DESC LIMIT $7",
        )
        .bind(f.since)
        .bind(i64::from(f.failed_only))
        .bind(&f.identity)
        .bind(&f.identity)
        .bind(&f.correlation_id)
        .bind(&f.correlation_id)
        .bind(i64::from(f.limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LoginEvent {
                    time_generated: r.try_get("time")?,
                    login_server: r.try_get("login_server")?,
                    identity: r.try_get("identity")?,
                    caller_ip_address: r.try_get("caller_ip")?,
                    user_agent: r.try_get("user_agent")?,
                    operation_name: r.try_get("operation")?,
                    result_type: r.try_get::<i64, _>("result_type")? as u16,
                    result_description: r.try_get("result_description")?,
                    duration_ms: r.try_get::<i64, _>("duration_ms")? as u64,
                    correlation_id: r.try_get("correlation_id")?,
                    jwt_id: r.try_get("jwt_id")?,
                })
            })
            .collect()
    }

    async fn repository_events(
        &self,
        f: &EventFilter,
    ) -> Result<Vec<RepositoryEvent>, MetadataError> {
        let rows = sqlx::query(
            "SELECT * FROM repository_events WHERE time >= $1
               AND ($2 = 0 OR result_type >= 400)
               AND (CAST($3 AS TEXT) IS NULL OR identity = $4)
               AND (CAST($5 AS TEXT) IS NULL OR repository = $6)
               AND (CAST($7 AS TEXT) IS NULL OR correlation_id = $8)
             ORDER BY id DESC LIMIT $9",
        )
        .bind(f.since)
        .bind(i64::from(f.failed_only))
        .bind(&f.identity)
        .bind(&f.identity)
        .bind(&f.repository)
        .bind(&f.repository)
        .bind(&f.correlation_id)
        .bind(&f.correlation_id)
        .bind(i64::from(f.limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RepositoryEvent {
                    time_generated: r.try_get("time")?,
                    login_server: r.try_get("login_server")?,
                    operation_name: r.try_get("operation")?,
                    repository: r.try_get("repository")?,
                    tag: r.try_get("tag")?,
                    digest: r.try_get("digest")?,
                    media_type: r.try_get("media_type")?,
                    artifact_type: r.try_get("artifact_type")?,
                    size: r.try_get::<Option<i64>, _>("size")?.map(|s| s as u64),
                    identity: r.try_get("identity")?,
                    caller_ip_address: r.try_get("caller_ip")?,
                    user_agent: r.try_get("user_agent")?,
                    result_type: r.try_get::<i64, _>("result_type")? as u16,
                    result_description: r.try_get("result_description")?,
                    duration_ms: r.try_get::<i64, _>("duration_ms")? as u64,
                    correlation_id: r.try_get("correlation_id")?,
                })
            })
            .collect()
    }

    async fn repository_event_counts(
        &self,
        since: i64,
    ) -> Result<Vec<HourlyCount>, MetadataError> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT time / 3600000 AS hour, operation, count(*) FROM repository_events
             WHERE time >= $1 AND result_type < 400
             GROUP BY time / 3600000, operation ORDER BY hour, operation",
        )
        .bind(since)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(hour, operation, count)| HourlyCount {
                hour: hour * 3600,
                operation,
                count: count.max(0) as u64,
            })
            .collect())
    }

    async fn failed_login_counts(&self, since: i64) -> Result<Vec<(String, u64)>, MetadataError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT result_description, count(*) AS n FROM login_events
             WHERE time >= $1 AND result_type >= 400
             GROUP BY result_description ORDER BY n DESC, result_description",
        )
        .bind(since)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(d, n)| (d, n.max(0) as u64))
            .collect())
    }

    async fn purge_events(&self, before: i64) -> Result<u64, MetadataError> {
        let a = sqlx::query("DELETE FROM login_events WHERE time < $1")
            .bind(before)
            .execute(&self.writer)
            .await?
            .rows_affected();
        let b = sqlx::query("DELETE FROM repository_events WHERE time < $1")
            .bind(before)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(a + b)
    }
}
        };
    };
}

pub(crate) use impl_event_store;
