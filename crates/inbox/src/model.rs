//! The inbox's values: who reads ([`Owner`]), what is created ([`NewNotification`]) and for whom
//! ([`Recipients`]), what is read back ([`Notification`], [`Page`], [`Counts`]), and how a
//! listing is narrowed ([`Filter`]).

/// Who reads: a user of a tenant. A reader sees their own notifications and the tenant-wide
/// ones of their tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The tenant.
    pub tenant: String,
    /// The user, within the tenant.
    pub user: String,
}

impl Owner {
    /// The user `user` of the tenant `tenant`.
    pub fn new(tenant: impl Into<String>, user: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            user: user.into(),
        }
    }
}

/// A notification to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    /// A short title.
    pub title: String,
    /// The text.
    pub message: String,
    /// Its type: `info`, `success`, `warning`, `error`, or any other string.
    pub kind: String,
    /// Its priority: `low`, `medium`, `high`, `urgent`, or any other string.
    pub priority: String,
    /// Where the notification's action leads, if it has one.
    pub action_url: Option<String>,
    /// The action's label, if it has one.
    pub action_label: Option<String>,
    /// Metadata for the client, stored as JSON text.
    pub metadata: Option<serde_json::Value>,
    /// Free data, stored as JSON text.
    pub data: Option<serde_json::Value>,
}

/// For whom a notification is created.
// Exhaustive on purpose: the server decides, for each kind of recipient, how it is authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// Each of these users of the tenant gets a notification of their own (a user named twice
    /// gets one).
    Users(Vec<String>),
    /// Every user of the tenant, now and later, sees the one notification; each has their own
    /// read and dismissed state for it.
    Tenant,
}

/// A stored notification, as its reader sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Its id: ids grow with time, and are never reused.
    pub id: i64,
    /// Its tenant.
    pub tenant: String,
    /// The user it is for; `None` for a tenant-wide notification.
    pub user: Option<String>,
    /// A short title.
    pub title: String,
    /// The text.
    pub message: String,
    /// Its type (`info`, `success`, `warning`, `error`, ...).
    pub kind: String,
    /// Its priority (`low`, `medium`, `high`, `urgent`, ...).
    pub priority: String,
    /// When the reader read it (Unix milliseconds), if they did.
    pub read_at: Option<i64>,
    /// When the reader dismissed it (Unix milliseconds), if they did.
    pub dismissed_at: Option<i64>,
    /// When it was created (Unix milliseconds).
    pub created_at: i64,
    /// Where its action leads, if it has one.
    pub action_url: Option<String>,
    /// Its action's label, if it has one.
    pub action_label: Option<String>,
    /// Its metadata; `Null` when it has none.
    pub metadata: serde_json::Value,
    /// Its free data; `Null` when it has none.
    pub data: serde_json::Value,
}

/// What a listing keeps, as the reader sees it; the default keeps everything, dismissed
/// notifications included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `Some(true)`: only the read ones; `Some(false)`: only the unread ones.
    pub read: Option<bool>,
    /// `Some(true)`: only the dismissed ones; `Some(false)`: only the others.
    pub dismissed: Option<bool>,
    /// Only this type.
    pub kind: Option<String>,
    /// Only this priority.
    pub priority: Option<String>,
}

/// One page of a listing, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The notifications, by id descending.
    pub notifications: Vec<Notification>,
    /// The cursor for the following page (the last id of this one, to pass as `before`);
    /// `None` when there is nothing more.
    pub next: Option<i64>,
}

/// What a reader's badge shows; dismissed notifications are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// The notifications not dismissed.
    pub total: u64,
    /// The notifications neither dismissed nor read.
    pub unread: u64,
    /// The unread ones whose priority is one of those asked for.
    pub urgent: u64,
}

/// Whether a call changed a notification's state: of two racing calls that set the same state,
/// exactly one gets [`Change::Changed`].
// Exhaustive on purpose: a call either changed the state or it did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// This call set the state.
    Changed,
    /// The state was already set; the time first set is kept.
    Unchanged,
}
