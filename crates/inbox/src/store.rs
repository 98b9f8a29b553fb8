//! [`Store`]: what the server asks of the inbox's storage. It is object-safe, so that the server
//! holds an `Arc<dyn Store>` and tests may put another store behind it.

use std::future::Future;
use std::pin::Pin;

use crate::error::StoreError;
use crate::model::{
    Change, Counts, Filter, NewNotification, Notification, Owner, Page, Recipients,
};

/// A boxed future that may move between threads, as the methods of [`Store`] return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The inbox's storage.
///
/// A reader ([`Owner`]) sees their own notifications and the tenant-wide ones of their tenant,
/// with their own read and dismissed state for each. A notification they cannot see answers as
/// one that does not exist: an unknown id, another user's and another tenant's are
/// indistinguishable.
///
/// Every write is acknowledged once it is durable. Times are Unix milliseconds given by the
/// caller (`now_ms`), so that the store has no clock of its own.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Creates a notification for each of `to`'s users (each user once), or one for the whole
    /// tenant, in one transaction, and returns the stored notifications in the order of the
    /// users. Then drops each of those users' oldest notifications beyond the configured bound
    /// (tenant-wide ones are bounded by age alone).
    fn create(
        &self,
        tenant: &str,
        to: &Recipients,
        notification: &NewNotification,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<Notification>, StoreError>>;

    /// The reader's notifications that pass `filter`, newest first, at most `limit` (at least
    /// one), with ids below `before` when it is given (the previous page's [`Page::next`]).
    fn list(
        &self,
        owner: &Owner,
        filter: &Filter,
        before: Option<i64>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Page, StoreError>>;

    /// The reader's counts; `urgent` counts the unread notifications whose priority is one of
    /// `urgent`.
    fn counts(&self, owner: &Owner, urgent: &[String])
        -> BoxFuture<'_, Result<Counts, StoreError>>;

    /// The notification `id` as the reader sees it, or `None` if they cannot see it.
    fn get(
        &self,
        owner: &Owner,
        id: i64,
    ) -> BoxFuture<'_, Result<Option<Notification>, StoreError>>;

    /// Marks the notification `id` read by the reader at `now_ms`, unless it already is (the
    /// first time is kept); `None` if they cannot see it.
    fn mark_read(
        &self,
        owner: &Owner,
        id: i64,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Option<Change>, StoreError>>;

    /// Marks the notification `id` dismissed by the reader at `now_ms`, unless it already is
    /// (the first time is kept); `None` if they cannot see it.
    fn dismiss(
        &self,
        owner: &Owner,
        id: i64,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Option<Change>, StoreError>>;

    /// Marks every notification of the reader that is neither read nor dismissed read at
    /// `now_ms`, and says how many it marked.
    fn mark_all_read(&self, owner: &Owner, now_ms: i64) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Deletes the notification `id` of `tenant`, whoever it is for (the backend's call, not a
    /// reader's); `false` if the tenant has none with that id.
    fn delete(&self, tenant: &str, id: i64) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Deletes the notifications created before `now_ms` less the configured maximum age, in
    /// bounded batches, and says how many it deleted.
    fn prune(&self, now_ms: i64) -> BoxFuture<'_, Result<u64, StoreError>>;
}
