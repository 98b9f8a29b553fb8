//! [`SqlStore::import`]: the bulk load, for moving an existing system's notifications into the
//! inbox. Many rows per statement and one transaction per call, where [`crate::Store::create`]
//! takes a transaction (and, in SQLite, a sync to disk) per notification.

use crate::connect::SqlStore;
use crate::error::StoreError;
use crate::model::NewNotification;
use crate::sql;

impl SqlStore {
    /// Stores `notifications` for `user` of `tenant` (for the whole tenant when `user` is
    /// `None`) as they are, in one transaction, and says how many it stored: the bulk load for
    /// moving an existing system's notifications into the inbox.
    ///
    /// Each is given with its creation time and, for a user's own, the time its user read it
    /// (Unix milliseconds; `None`: unread). They are stored in the order given and ids grow
    /// in that order, so give them oldest first: a listing is newest first by id. A
    /// tenant-wide notification's read state is each reader's own, so none may be given one.
    ///
    /// No retention applies: a user may be left with more than `max_per_user`, until their
    /// next created notification drops the oldest beyond it, and notifications older than
    /// `max_age` stay until the next [`crate::Store::prune`]. No live event is sent.
    pub async fn import(
        &self,
        tenant: &str,
        user: Option<&str>,
        notifications: &[(NewNotification, i64, Option<i64>)],
    ) -> Result<u64, StoreError> {
        if user.is_none() && notifications.iter().any(|(_, _, read)| read.is_some()) {
            return Err(StoreError::Invalid(
                "a tenant-wide notification has no read time of its own: each reader keeps theirs"
                    .into(),
            ));
        }
        if notifications.is_empty() {
            return Ok(0);
        }
        let _turn = self.write_turn().await?;
        let mut tx = self.pool.begin().await.map_err(StoreError::from_sqlx)?;
        let mut stored = 0;
        for chunk in notifications.chunks(sql::IMPORT_ROWS) {
            let text = sql::import(chunk.len());
            let mut query = sqlx::query(&text).bind(tenant).bind(user);
            for (new, created_at, read_at) in chunk {
                query = query
                    .bind(new.title.as_str())
                    .bind(new.message.as_str())
                    .bind(new.kind.as_str())
                    .bind(new.priority.as_str())
                    .bind(*created_at)
                    .bind(*read_at)
                    .bind(new.action_url.as_deref())
                    .bind(new.action_label.as_deref())
                    .bind(new.metadata.as_ref().map(|v| v.to_string()))
                    .bind(new.data.as_ref().map(|v| v.to_string()));
            }
            stored += query
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?
                .rows_affected();
        }
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(stored)
    }
}
