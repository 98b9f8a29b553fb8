//! The notification inbox (`[inbox]`): notifications kept per tenant and user in a database
//! (`roomcast-inbox`: a SQLite file by default, PostgreSQL when configured), created through
//! the API, read and changed by their user from either protocol (native `inbox` commands,
//! Socket.IO `inbox` routes) or by the backend through the API.
//!
//! Every change that others should see is published through the node like any event, so it
//! reaches the user's connections on every node of a cluster: a created notification to its
//! users (or to the whole tenant), a read or a dismissal to the user's other connections, a
//! read-all to them too ([`live`]).
//!
//! Each operation runs off the connection's driver (on its async lane, or in the API's
//! request), bounded in time (`inbox.timeout_ms`) and in number on this node
//! (`inbox.max_in_flight`): a slow or locked database answers `inbox_unavailable` or `busy`,
//! never stalls another client.

mod json;
mod live;
mod metrics;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roomcast_broker::ConnId;
use roomcast_inbox::{Change, SqlStore, Store, StoreError, StoreOptions};
pub use roomcast_inbox::{NewNotification, Owner, Recipients};
use serde_json::{json, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::client::Refusal;
use crate::config::{ConfigError, InboxConfig, InboxOp};
use crate::node::Node;
pub use json::{notification_json, parse_new, ListOptions};
pub use metrics::InboxMetrics;

/// Who acts on an inbox: the user, and the connection to leave out of the live events it
/// causes (none for the API).
#[derive(Debug, Clone)]
pub struct Actor {
    /// The tenant and user whose inbox it is.
    pub owner: Owner,
    /// The caller's connection, which its own change is not echoed to.
    pub conn: Option<ConnId>,
}

impl Actor {
    /// The session of `identity` on connection `conn`.
    pub fn of(identity: &crate::auth::SessionIdentity, conn: ConnId) -> Actor {
        Actor {
            owner: Owner {
                tenant: identity.tenant.to_string(),
                user: identity.user.to_string(),
            },
            conn: Some(conn),
        }
    }
}

/// The inbox of one server.
#[derive(Debug)]
pub struct Inbox {
    store: Arc<dyn Store>,
    database: &'static str,
    urgent: Vec<String>,
    page_size: u32,
    max_page_size: u32,
    max_recipients: usize,
    timeout: Duration,
    permits: Arc<Semaphore>,
    live: live::Live,
    node: Arc<Node>,
    /// Counts of the operations, for `GET /metrics`.
    pub metrics: Arc<InboxMetrics>,
}

impl Inbox {
    /// Checks what of `config` only the inbox can check (the live event templates).
    pub fn check(config: &InboxConfig) -> Result<(), ConfigError> {
        live::Live::compile(&config.live).map(drop)
    }

    /// Opens the configured database (creating a SQLite file, running the migrations) within
    /// `inbox.timeout_ms`, and sends live events through `node`.
    pub async fn open(config: &InboxConfig, node: Arc<Node>) -> anyhow::Result<Arc<Inbox>> {
        let options = StoreOptions {
            url: config.database.clone(),
            max_connections: config.max_connections,
            // Below the operation's deadline, so that a statement that waited for its lock
            // has given up by the time the caller is told the inbox is unavailable.
            acquire_timeout: config.timeout() * 4 / 5,
            busy_timeout: config.timeout() * 4 / 5,
            max_per_user: config.max_per_user,
            max_age: config.max_age(),
        };
        let store = SqlStore::connect(&options)
            .await
            .map_err(|e| anyhow::anyhow!("inbox.database: {e}"))?;
        let database = store.kind();
        tracing::info!(database, "inbox open");
        let live = live::Live::compile(&config.live)?;
        Ok(Arc::new(Inbox {
            store: Arc::new(store),
            database,
            urgent: config.urgent.clone(),
            page_size: config.page_size,
            max_page_size: config.max_page_size,
            max_recipients: config.max_recipients,
            timeout: config.timeout(),
            permits: Arc::new(Semaphore::new(config.max_in_flight)),
            live,
            node,
            metrics: Arc::default(),
        }))
    }

    /// Starts `op` for a client: `Err` at once when the request is wrong or the inbox is busy;
    /// else the future of the answer (the result a reply renders as `{result}`).
    pub fn start(
        self: &Arc<Self>,
        op: InboxOp,
        actor: Actor,
        notification: Option<i64>,
        options: &Value,
    ) -> Result<impl Future<Output = Result<Value, Refusal>> + Send + 'static, Refusal> {
        let id = || {
            notification.ok_or_else(|| {
                Refusal::InvalidRequest("`notification` (the notification's id) is required".into())
            })
        };
        let request = match op {
            InboxOp::Counts => Request::Counts,
            InboxOp::List => Request::List(ListOptions::parse(
                options,
                self.page_size,
                self.max_page_size,
            )?),
            InboxOp::Read => Request::Mark(id()?, Mark::Read),
            InboxOp::Dismiss => Request::Mark(id()?, Mark::Dismiss),
            InboxOp::ReadAll => Request::ReadAll,
        };
        let permit = self.permit()?;
        let inbox = self.clone();
        Ok(async move {
            let _permit = permit;
            match request {
                Request::Counts => inbox.counts_of(&actor.owner).await,
                Request::List(list) => inbox.list_of(&actor.owner, &list).await,
                Request::Mark(id, mark) => inbox.mark(&actor, id, mark).await,
                Request::ReadAll => inbox.read_all(&actor).await,
            }
        })
    }

    /// `sqlite` or `postgres`.
    pub fn database(&self) -> &'static str {
        self.database
    }

    /// A permit to run one operation, or `Busy` past `inbox.max_in_flight`.
    pub(crate) fn permit(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            self.metrics.busy();
            Refusal::Busy
        })
    }

    /// `{total, unread, urgent}` of `owner`'s inbox, for the API.
    pub async fn counts(&self, owner: &Owner) -> Result<Value, Refusal> {
        let _permit = self.permit()?;
        self.counts_of(owner).await
    }

    async fn counts_of(&self, owner: &Owner) -> Result<Value, Refusal> {
        let counts = self
            .run("counts", self.store.counts(owner, &self.urgent))
            .await?;
        Ok(json!({
            "total": counts.total,
            "unread": counts.unread,
            "urgent": counts.urgent,
        }))
    }

    /// A page of `owner`'s notifications, newest first: `{notifications, next_cursor}`, for
    /// the API.
    pub async fn list(&self, owner: &Owner, options: &ListOptions) -> Result<Value, Refusal> {
        let _permit = self.permit()?;
        self.list_of(owner, options).await
    }

    async fn list_of(&self, owner: &Owner, options: &ListOptions) -> Result<Value, Refusal> {
        let page = self
            .run(
                "list",
                self.store
                    .list(owner, &options.filter, options.cursor, options.limit),
            )
            .await?;
        let notifications: Vec<Value> = page.notifications.iter().map(notification_json).collect();
        Ok(json!({ "notifications": notifications, "next_cursor": page.next }))
    }

    /// Marks notification `id` of the actor's inbox read or dismissed; the first to change it
    /// tells the user's other connections.
    async fn mark(&self, actor: &Actor, id: i64, mark: Mark) -> Result<Value, Refusal> {
        let now = now_ms();
        let owner = &actor.owner;
        let change = match mark {
            Mark::Read => {
                self.run("read", self.store.mark_read(owner, id, now))
                    .await?
            }
            Mark::Dismiss => {
                self.run("dismiss", self.store.dismiss(owner, id, now))
                    .await?
            }
        };
        let changed = match change {
            None => return Err(Refusal::NotFound),
            Some(Change::Changed) => true,
            Some(Change::Unchanged) => false,
        };
        if changed {
            let fields = live::Fields::marked(owner, id);
            let kind = match mark {
                Mark::Read => live::Moment::Read,
                Mark::Dismiss => live::Moment::Dismissed,
            };
            self.send(self.live.to_user(kind, owner, actor.conn, &fields))
                .await;
        }
        Ok(json!({ "notification_id": id, "success": true, "changed": changed }))
    }

    /// Marks every unread notification of the actor's inbox read: `{count}`.
    async fn read_all(&self, actor: &Actor) -> Result<Value, Refusal> {
        let owner = &actor.owner;
        let count = self
            .run("read_all", self.store.mark_all_read(owner, now_ms()))
            .await?;
        if count > 0 {
            let fields = live::Fields::all_read(owner, count);
            let publications = self
                .live
                .to_user(live::Moment::AllRead, owner, actor.conn, &fields);
            self.send(publications).await;
        }
        Ok(json!({ "count": count }))
    }

    /// Marks notification `id` of `owner` read (`dismiss`: dismissed), for the API.
    pub async fn mark_by_api(
        &self,
        owner: Owner,
        id: i64,
        dismiss: bool,
    ) -> Result<Value, Refusal> {
        let _permit = self.permit()?;
        let actor = Actor { owner, conn: None };
        let mark = if dismiss { Mark::Dismiss } else { Mark::Read };
        self.mark(&actor, id, mark).await
    }

    /// Marks every notification of `owner` read, for the API.
    pub async fn read_all_by_api(&self, owner: Owner) -> Result<Value, Refusal> {
        let _permit = self.permit()?;
        self.read_all(&Actor { owner, conn: None }).await
    }

    /// Stores `new` for `to` in `tenant`: the stored notifications' ids, one per user named (in
    /// the order they were first named), or the one tenant-wide id. Then sends them to their
    /// users' connections, from a task of its own bounded by `inbox.timeout_ms` (the answer
    /// does not wait for the deliveries; a delivery it could not make is counted).
    pub async fn create(
        self: &Arc<Self>,
        tenant: &str,
        to: Recipients,
        new: NewNotification,
    ) -> Result<Vec<i64>, Refusal> {
        let (to, named) = match to {
            Recipients::Users(users) => {
                if users.is_empty() || users.len() > self.max_recipients {
                    return Err(Refusal::InvalidRequest(format!(
                        "`users` must name 1 to {} users",
                        self.max_recipients
                    )));
                }
                // One order for every create, so that two creates naming the same users
                // take their rows' locks in the same order.
                let mut sorted = users.clone();
                sorted.sort_unstable();
                sorted.dedup();
                (Recipients::Users(sorted), Some(users))
            }
            Recipients::Tenant => (Recipients::Tenant, None),
        };
        let _permit = self.permit()?;
        let stored = self
            .run("create", self.store.create(tenant, &to, &new, now_ms()))
            .await?;
        self.metrics.created(stored.len() as u64);
        let ids = match named {
            None => stored.iter().map(|n| n.id).collect(),
            Some(users) => {
                let by_user: std::collections::HashMap<&str, i64> = stored
                    .iter()
                    .filter_map(|n| Some((n.user.as_deref()?, n.id)))
                    .collect();
                let mut seen = std::collections::HashSet::new();
                users
                    .iter()
                    .filter(|u| seen.insert(u.as_str()))
                    .filter_map(|u| by_user.get(u.as_str()).copied())
                    .collect()
            }
        };
        let publications = self.live.created(tenant, &to, &stored);
        let inbox = self.clone();
        tokio::spawn(async move {
            let deadline = inbox.timeout;
            if tokio::time::timeout(deadline, inbox.send(publications))
                .await
                .is_err()
            {
                inbox.metrics.live_failed();
                tracing::warn!(
                    ?deadline,
                    "inbox live events of a create not all published in time"
                );
            }
        });
        Ok(ids)
    }

    /// Deletes notification `id` of `tenant` (whichever user's): whether there was one.
    pub async fn delete(&self, tenant: &str, id: i64) -> Result<bool, Refusal> {
        let _permit = self.permit()?;
        self.run("delete", self.store.delete(tenant, id)).await
    }

    /// Deletes what is older than `inbox.max_age_days`, for at most a minute (what is left
    /// waits for the next round): how many. Not an operation of `/health`'s: a slow prune does
    /// not make the inbox degraded.
    pub async fn prune(&self) -> u64 {
        match tokio::time::timeout(PRUNE_BUDGET, self.store.prune(now_ms())).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "inbox prune failed");
                0
            }
            Err(_) => {
                tracing::info!(budget = ?PRUNE_BUDGET, "inbox prune stopped at its budget; it goes on next round");
                0
            }
        }
    }

    /// Runs one store call within the timeout, counting how it went.
    async fn run<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, Refusal> {
        let started = std::time::Instant::now();
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                tracing::warn!(op, error = %e, "inbox operation failed");
                Err(Refusal::InboxUnavailable)
            }
            Err(_) => {
                tracing::warn!(op, timeout = ?self.timeout, "inbox operation timed out");
                Err(Refusal::InboxUnavailable)
            }
        };
        self.metrics
            .operation(op, outcome.is_ok(), started.elapsed());
        outcome
    }

    /// Publishes the live events of a change; a failure is logged (the change is stored).
    async fn send(&self, publications: Vec<roomcast_broker::Publication>) {
        for publication in publications {
            if let Err(e) = self.node.publish(publication).await {
                self.metrics.live_failed();
                tracing::warn!(error = %e, "inbox live event not published");
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Mark {
    Read,
    Dismiss,
}

/// A client's request, checked before it takes a permit.
#[derive(Debug)]
enum Request {
    Counts,
    List(ListOptions),
    Mark(i64, Mark),
    ReadAll,
}

/// How long one round of pruning may take.
const PRUNE_BUDGET: Duration = Duration::from_secs(60);

/// Prunes the inbox at start and then every ten minutes, until the server is gone.
pub(crate) async fn prune_loop(inbox: std::sync::Weak<Inbox>) {
    let mut every = tokio::time::interval(Duration::from_secs(600));
    loop {
        every.tick().await;
        let Some(inbox) = inbox.upgrade() else {
            return;
        };
        match inbox.prune().await {
            0 => {}
            n => tracing::info!(deleted = n, "inbox pruned past inbox.max_age_days"),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
