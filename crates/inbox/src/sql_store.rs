//! [`Store`] for [`SqlStore`]: each call is one statement, or one short transaction that starts
//! by writing, on a pooled connection; rows are read back into [`Notification`]s here.
//!
//! Writes take their turn first ([`SqlStore::write_turn`]: SQLite's writers queue in order).
//!
//! A state is set by a single `UPDATE ... WHERE ... IS NULL` (or an upsert of a receipt with the
//! same condition), never by reading then writing: the database decides which of two racing
//! calls sets it, and SQLite never has to upgrade a reader's lock to a writer's, which fails at
//! once (`SQLITE_BUSY`) rather than waiting.

use std::collections::HashSet;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use crate::connect::SqlStore;
use crate::error::StoreError;
use crate::model::{
    Change, Counts, Filter, NewNotification, Notification, Owner, Page, Recipients,
};
use crate::sql::{self, Arg, Mark, Statement};
use crate::store::{BoxFuture, Store};

impl Store for SqlStore {
    fn create(
        &self,
        tenant: &str,
        to: &Recipients,
        notification: &NewNotification,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<Notification>, StoreError>> {
        let (tenant, to, notification) = (tenant.to_owned(), to.clone(), notification.clone());
        Box::pin(async move { self.insert(&tenant, &to, &notification, now_ms).await })
    }

    fn list(
        &self,
        owner: &Owner,
        filter: &Filter,
        before: Option<i64>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Page, StoreError>> {
        let (owner, filter) = (owner.clone(), filter.clone());
        Box::pin(async move { self.page(&owner, &filter, before, limit).await })
    }

    fn counts(
        &self,
        owner: &Owner,
        urgent: &[String],
    ) -> BoxFuture<'_, Result<Counts, StoreError>> {
        let statement = Statement::counts(&owner.tenant, &owner.user, urgent);
        Box::pin(async move {
            let rows = bind(sqlx::query(&statement.text), &statement.args)
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::from_sqlx)?;
            let mut counts = Counts::default();
            for row in &rows {
                counts.total += count(row, 0)?;
                counts.unread += count(row, 1)?;
                counts.urgent += count(row, 2)?;
            }
            Ok(counts)
        })
    }

    fn get(
        &self,
        owner: &Owner,
        id: i64,
    ) -> BoxFuture<'_, Result<Option<Notification>, StoreError>> {
        let owner = owner.clone();
        Box::pin(async move {
            let row = sqlx::query(sql::GET)
                .bind(owner.tenant.as_str())
                .bind(owner.user.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::from_sqlx)?;
            row.as_ref().map(notification).transpose()
        })
    }

    fn mark_read(
        &self,
        owner: &Owner,
        id: i64,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Option<Change>, StoreError>> {
        let owner = owner.clone();
        Box::pin(async move { self.mark(&owner, id, now_ms, Mark::Read).await })
    }

    fn dismiss(
        &self,
        owner: &Owner,
        id: i64,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Option<Change>, StoreError>> {
        let owner = owner.clone();
        Box::pin(async move { self.mark(&owner, id, now_ms, Mark::Dismissed).await })
    }

    fn mark_all_read(&self, owner: &Owner, now_ms: i64) -> BoxFuture<'_, Result<u64, StoreError>> {
        let owner = owner.clone();
        Box::pin(async move {
            let _turn = self.write_turn().await?;
            let mut tx = self.pool.begin().await.map_err(StoreError::from_sqlx)?;
            let mut marked = 0;
            for statement in [sql::READ_ALL_OWN, sql::READ_ALL_TENANT_WIDE] {
                marked += sqlx::query(statement)
                    .bind(owner.tenant.as_str())
                    .bind(owner.user.as_str())
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_sqlx)?
                    .rows_affected();
            }
            tx.commit().await.map_err(StoreError::from_sqlx)?;
            Ok(marked)
        })
    }

    fn delete(&self, tenant: &str, id: i64) -> BoxFuture<'_, Result<bool, StoreError>> {
        let tenant = tenant.to_owned();
        Box::pin(async move {
            let _turn = self.write_turn().await?;
            let deleted = sqlx::query(sql::DELETE)
                .bind(tenant.as_str())
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(StoreError::from_sqlx)?;
            Ok(deleted.rows_affected() > 0)
        })
    }

    fn prune(&self, now_ms: i64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let cutoff = now_ms.saturating_sub(self.max_age_ms);
            let mut pruned = 0;
            loop {
                let turn = self.write_turn().await?;
                let deleted = sqlx::query(sql::PRUNE)
                    .bind(cutoff)
                    .bind(sql::PRUNE_BATCH)
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::from_sqlx)?
                    .rows_affected();
                // Other writers go between two batches.
                drop(turn);
                pruned += deleted;
                if deleted < sql::PRUNE_BATCH.unsigned_abs() {
                    break;
                }
            }
            if pruned > 0 {
                tracing::debug!(pruned, cutoff, "pruned the inbox");
            }
            Ok(pruned)
        })
    }
}

impl SqlStore {
    async fn insert(
        &self,
        tenant: &str,
        to: &Recipients,
        new: &NewNotification,
        now_ms: i64,
    ) -> Result<Vec<Notification>, StoreError> {
        let users: Vec<Option<&str>> = match to {
            Recipients::Users(users) => {
                let mut seen = HashSet::new();
                users
                    .iter()
                    .filter(|user| seen.insert(user.as_str()))
                    .map(|user| Some(user.as_str()))
                    .collect()
            }
            Recipients::Tenant => vec![None],
        };
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let metadata = new.metadata.as_ref().map(|v| v.to_string());
        let data = new.data.as_ref().map(|v| v.to_string());

        let _turn = self.write_turn().await?;
        let mut tx = self.pool.begin().await.map_err(StoreError::from_sqlx)?;
        let mut created = Vec::with_capacity(users.len());
        for &user in &users {
            let id: i64 = sqlx::query_scalar(sql::INSERT)
                .bind(tenant)
                .bind(user)
                .bind(new.title.as_str())
                .bind(new.message.as_str())
                .bind(new.kind.as_str())
                .bind(new.priority.as_str())
                .bind(now_ms)
                .bind(new.action_url.as_deref())
                .bind(new.action_label.as_deref())
                .bind(metadata.as_deref())
                .bind(data.as_deref())
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
            created.push(Notification {
                id,
                tenant: tenant.to_owned(),
                user: user.map(str::to_owned),
                title: new.title.clone(),
                message: new.message.clone(),
                kind: new.kind.clone(),
                priority: new.priority.clone(),
                read_at: None,
                dismissed_at: None,
                created_at: now_ms,
                action_url: new.action_url.clone(),
                action_label: new.action_label.clone(),
                metadata: new.metadata.clone().unwrap_or_default(),
                data: new.data.clone().unwrap_or_default(),
            });
        }
        // The newest `max_per_user` of each user's own notifications stay.
        let offset = i64::from(self.max_per_user) - 1;
        for user in users.into_iter().flatten() {
            sqlx::query(sql::RETAIN)
                .bind(tenant)
                .bind(user)
                .bind(offset)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(created)
    }

    async fn page(
        &self,
        owner: &Owner,
        filter: &Filter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        let limit = limit.max(1);
        // One more than the page, to know whether another follows.
        let statement = Statement::list(
            &owner.tenant,
            &owner.user,
            filter,
            before.unwrap_or(i64::MAX),
            i64::from(limit) + 1,
        );
        let rows = bind(sqlx::query(&statement.text), &statement.args)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        let mut notifications = rows
            .iter()
            .map(notification)
            .collect::<Result<Vec<_>, _>>()?;
        let page = usize::try_from(limit).unwrap_or(usize::MAX);
        let next = if notifications.len() > page {
            notifications.truncate(page);
            notifications.last().map(|n| n.id)
        } else {
            None
        };
        Ok(Page {
            notifications,
            next,
        })
    }

    /// Sets `mark` on the notification `id` for `owner`: on their own row if it is theirs, else
    /// in their receipt if it is tenant-wide; then, if neither changed, tells an already set
    /// state from a notification they cannot see.
    async fn mark(
        &self,
        owner: &Owner,
        id: i64,
        now_ms: i64,
        mark: Mark,
    ) -> Result<Option<Change>, StoreError> {
        let _turn = self.write_turn().await?;
        for statement in [mark.own(), mark.tenant_wide()] {
            let changed = sqlx::query(statement)
                .bind(owner.tenant.as_str())
                .bind(owner.user.as_str())
                .bind(id)
                .bind(now_ms)
                .execute(&self.pool)
                .await
                .map_err(StoreError::from_sqlx)?
                .rows_affected();
            if changed > 0 {
                return Ok(Some(Change::Changed));
            }
        }
        let visible = sqlx::query(sql::VISIBLE)
            .bind(owner.tenant.as_str())
            .bind(owner.user.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(visible.map(|_| Change::Unchanged))
    }
}

/// `query` with `args` bound in order.
fn bind<'q>(
    mut query: Query<'q, Any, AnyArguments<'q>>,
    args: &'q [Arg],
) -> Query<'q, Any, AnyArguments<'q>> {
    for arg in args {
        query = match arg {
            Arg::Int(value) => query.bind(*value),
            Arg::Text(value) => query.bind(value.as_str()),
        };
    }
    query
}

/// The count in column `index`.
fn count(row: &AnyRow, index: usize) -> Result<u64, StoreError> {
    let n: i64 = row.try_get(index).map_err(StoreError::from_sqlx)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// A row of the notifications' columns, as `sql` selects them.
fn notification(row: &AnyRow) -> Result<Notification, StoreError> {
    let id: i64 = row.try_get("id").map_err(StoreError::from_sqlx)?;
    let text = |column: &str| -> Result<String, StoreError> {
        row.try_get(column).map_err(StoreError::from_sqlx)
    };
    let optional = |column: &str| -> Result<Option<String>, StoreError> {
        row.try_get(column).map_err(StoreError::from_sqlx)
    };
    let time = |column: &str| -> Result<Option<i64>, StoreError> {
        row.try_get(column).map_err(StoreError::from_sqlx)
    };
    let json = |column: &str| -> Result<serde_json::Value, StoreError> {
        match optional(column)? {
            None => Ok(serde_json::Value::Null),
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                StoreError::Database(format!("notification {id}'s {column} is not JSON: {e}"))
            }),
        }
    };
    Ok(Notification {
        id,
        tenant: text("tenant")?,
        user: optional("user_id")?,
        title: text("title")?,
        message: text("message")?,
        kind: text("kind")?,
        priority: text("priority")?,
        read_at: time("read_at")?,
        dismissed_at: time("dismissed_at")?,
        created_at: row.try_get("created_at").map_err(StoreError::from_sqlx)?,
        action_url: optional("action_url")?,
        action_label: optional("action_label")?,
        metadata: json("metadata")?,
        data: json("data")?,
    })
}
