//! The persistent notification inbox's storage: notifications per tenant and user, their read
//! and dismissed state, listing, counts, retention and pruning.
//!
//! - [`Store`]: what the server asks, object-safe (`Arc<dyn Store>`), with [`StoreError`].
//! - [`SqlStore`]: the store in SQLite (a file, WAL, every acknowledged write synced) or in
//!   PostgreSQL, chosen by the URL's scheme, with one set of SQL for both and the schema's
//!   migrations embedded and run by [`SqlStore::connect`]; [`SqlStore::import`] bulk-loads an
//!   existing system's notifications.
//! - A notification is for one user, or for the whole tenant: a tenant-wide notification is
//!   stored once and each user keeps their own read and dismissed state for it.
//!
//! Times are Unix milliseconds, given by the caller.

mod connect;
mod error;
mod import;
mod model;
mod redact;
mod sql;
mod sql_store;
mod store;

pub use connect::{SqlStore, StoreOptions};
pub use error::StoreError;
pub use model::{Change, Counts, Filter, NewNotification, Notification, Owner, Page, Recipients};
pub use redact::redact;
pub use store::{BoxFuture, Store};
