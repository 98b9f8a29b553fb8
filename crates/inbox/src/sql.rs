//! The inbox's SQL, one text for SQLite and PostgreSQL: standard SQL with `$1, $2, ...`
//! parameters, which SQLite takes as numbered parameters too. The statements with optional parts
//! (a listing's filters, the urgent priorities) are built by [`Statement`], which numbers their
//! parameters.
//!
//! A user's own notification keeps its read and dismissed times in its row; a tenant-wide one
//! (`user_id IS NULL`) keeps each reader's in `receipts`. Queries read the two sources apart, each
//! through its index, so that no plan sorts or scans all of a user's rows to find a page.

use crate::model::Filter;

/// A notification's columns as a reader of their own row sees them (`n` is the row).
const OWN_COLUMNS: &str = "n.id, n.tenant, n.user_id, n.title, n.message, n.kind, n.priority, \
     n.read_at, n.dismissed_at, n.created_at, n.action_url, n.action_label, n.metadata, n.data";

/// A tenant-wide notification's columns as a reader sees it (`r` is their receipt, if any).
const WIDE_COLUMNS: &str = "n.id, n.tenant, n.user_id, n.title, n.message, n.kind, n.priority, \
     r.read_at, r.dismissed_at, n.created_at, n.action_url, n.action_label, n.metadata, n.data";

/// Creates one notification: $1 tenant, $2 user (NULL for the whole tenant), $3 title,
/// $4 message, $5 kind, $6 priority, $7 created_at, $8 action_url, $9 action_label,
/// $10 metadata, $11 data.
pub(crate) const INSERT: &str = "INSERT INTO notifications \
     (tenant, user_id, title, message, kind, priority, created_at, action_url, action_label, metadata, data) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id";

/// Rows in one statement of an import: 10 parameters each besides the tenant and the user,
/// well within SQLite's 32,766 bound parameters (and PostgreSQL's 65,535).
pub(crate) const IMPORT_ROWS: usize = 400;

/// Stores `rows` notifications at once: $1 tenant, $2 user (NULL for the whole tenant), then
/// for each row its title, message, kind, priority, created_at, read_at, action_url,
/// action_label, metadata and data, in that order.
pub(crate) fn import(rows: usize) -> String {
    let mut text = String::from(
        "INSERT INTO notifications \
         (tenant, user_id, title, message, kind, priority, created_at, read_at, action_url, \
         action_label, metadata, data) VALUES ",
    );
    for row in 0..rows {
        if row > 0 {
            text.push_str(", ");
        }
        let first = 3 + row * 10;
        let own: Vec<String> = (first..first + 10).map(|i| format!("${i}")).collect();
        text.push_str(&format!("($1, $2, {})", own.join(", ")));
    }
    text
}

/// Drops user $2 of tenant $1's own notifications older than their $3-th newest ($3 is the
/// bound less one). The subquery walks the `(tenant, user_id, id)` index from the newest; with
/// fewer rows than the bound it is NULL, and nothing is deleted.
pub(crate) const RETAIN: &str = "DELETE FROM notifications \
     WHERE tenant = $1 AND user_id = $2 AND id < (\
         SELECT id FROM notifications WHERE tenant = $1 AND user_id = $2 \
         ORDER BY id DESC LIMIT 1 OFFSET $3)";

/// The notification $3 as user $2 of tenant $1 sees it, own or tenant-wide.
pub(crate) const GET: &str =
    "SELECT n.id, n.tenant, n.user_id, n.title, n.message, n.kind, n.priority, \
     COALESCE(n.read_at, r.read_at) AS read_at, \
     COALESCE(n.dismissed_at, r.dismissed_at) AS dismissed_at, \
     n.created_at, n.action_url, n.action_label, n.metadata, n.data \
     FROM notifications n \
     LEFT JOIN receipts r ON r.notification_id = n.id AND r.user_id = $2 \
     WHERE n.id = $3 AND n.tenant = $1 AND (n.user_id = $2 OR n.user_id IS NULL)";

/// Whether user $2 of tenant $1 can see the notification $3.
pub(crate) const VISIBLE: &str = "SELECT id FROM notifications \
     WHERE id = $3 AND tenant = $1 AND (user_id = $2 OR user_id IS NULL)";

/// A state a reader sets once: the first time is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    Read,
    Dismissed,
}

impl Mark {
    /// Sets the state on user $2 of tenant $1's own notification $3, at $4, if it is not set:
    /// one statement, whose count of changed rows says whether this call set it.
    pub(crate) fn own(self) -> &'static str {
        match self {
            Self::Read => {
                "UPDATE notifications SET read_at = $4 \
                 WHERE id = $3 AND tenant = $1 AND user_id = $2 AND read_at IS NULL"
            }
            Self::Dismissed => {
                "UPDATE notifications SET dismissed_at = $4 \
                 WHERE id = $3 AND tenant = $1 AND user_id = $2 AND dismissed_at IS NULL"
            }
        }
    }

    /// Sets the state in user $2's receipt for the tenant-wide notification $3 of tenant $1,
    /// at $4, if it is not set: one upsert, which changes no row when the receipt has it
    /// already, nor when $3 is not a tenant-wide notification of the tenant.
    pub(crate) fn tenant_wide(self) -> &'static str {
        match self {
            Self::Read => {
                "INSERT INTO receipts (notification_id, user_id, read_at) \
                 SELECT id, $2, $4 FROM notifications \
                 WHERE id = $3 AND tenant = $1 AND user_id IS NULL \
                 ON CONFLICT (notification_id, user_id) DO UPDATE \
                 SET read_at = excluded.read_at WHERE receipts.read_at IS NULL"
            }
            Self::Dismissed => {
                "INSERT INTO receipts (notification_id, user_id, dismissed_at) \
                 SELECT id, $2, $4 FROM notifications \
                 WHERE id = $3 AND tenant = $1 AND user_id IS NULL \
                 ON CONFLICT (notification_id, user_id) DO UPDATE \
                 SET dismissed_at = excluded.dismissed_at WHERE receipts.dismissed_at IS NULL"
            }
        }
    }
}

/// Marks user $2 of tenant $1's own notifications that are neither read nor dismissed read at $3.
pub(crate) const READ_ALL_OWN: &str = "UPDATE notifications SET read_at = $3 \
     WHERE tenant = $1 AND user_id = $2 AND read_at IS NULL AND dismissed_at IS NULL";

/// Marks tenant $1's tenant-wide notifications that user $2 has neither read nor dismissed read
/// at $3, in their receipts.
pub(crate) const READ_ALL_TENANT_WIDE: &str =
    "INSERT INTO receipts (notification_id, user_id, read_at) \
     SELECT n.id, $2, $3 FROM notifications n \
     LEFT JOIN receipts r ON r.notification_id = n.id AND r.user_id = $2 \
     WHERE n.tenant = $1 AND n.user_id IS NULL AND r.read_at IS NULL AND r.dismissed_at IS NULL \
     ON CONFLICT (notification_id, user_id) DO UPDATE \
     SET read_at = excluded.read_at \
     WHERE receipts.read_at IS NULL AND receipts.dismissed_at IS NULL";

/// Deletes tenant $1's notification $2 (its receipts go with it).
pub(crate) const DELETE: &str = "DELETE FROM notifications WHERE id = $2 AND tenant = $1";

/// How many rows one pruning statement deletes at most, so that none holds the write lock long.
/// Small enough too that PostgreSQL deletes them by their primary key: at 10,000 its planner
/// would rather join them to a scan of the whole table.
pub(crate) const PRUNE_BATCH: i64 = 1_000;

/// Deletes at most $2 notifications created before $1 (their receipts go with them).
pub(crate) const PRUNE: &str = "DELETE FROM notifications WHERE id IN (\
     SELECT id FROM notifications WHERE created_at < $1 LIMIT $2)";

/// A statement's argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
}

/// A statement with optional parts: its text and its arguments, `$1` being the first.
#[derive(Debug, Default)]
pub(crate) struct Statement {
    pub(crate) text: String,
    pub(crate) args: Vec<Arg>,
}

impl Statement {
    /// Adds an argument and gives its placeholder.
    fn param(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    /// A page of `owner`'s notifications with ids below `before`, newest first, at most
    /// `limit`: the newest `limit` of each source, through its index, then merged.
    pub(crate) fn list(tenant: &str, user: &str, filter: &Filter, before: i64, limit: i64) -> Self {
        let mut s = Self::default();
        let tenant = s.param(Arg::Text(tenant.to_owned()));
        let user = s.param(Arg::Text(user.to_owned()));
        let before = s.param(Arg::Int(before));
        let limit = s.param(Arg::Int(limit));
        let kind = filter.kind.clone().map(|k| s.param(Arg::Text(k)));
        let priority = filter.priority.clone().map(|p| s.param(Arg::Text(p)));
        let own = conditions(filter, "n", kind.as_deref(), priority.as_deref());
        let wide = conditions(filter, "r", kind.as_deref(), priority.as_deref());
        s.text = format!(
            "SELECT * FROM (\
                 SELECT {OWN_COLUMNS} FROM notifications n \
                 WHERE n.tenant = {tenant} AND n.user_id = {user} AND n.id < {before}{own} \
                 ORDER BY n.id DESC LIMIT {limit}) AS own \
             UNION ALL \
             SELECT * FROM (\
                 SELECT {WIDE_COLUMNS} FROM notifications n \
                 LEFT JOIN receipts r ON r.notification_id = n.id AND r.user_id = {user} \
                 WHERE n.tenant = {tenant} AND n.user_id IS NULL AND n.id < {before}{wide} \
                 ORDER BY n.id DESC LIMIT {limit}) AS wide \
             ORDER BY id DESC LIMIT {limit}"
        );
        s
    }

    /// Two rows, `owner`'s own notifications and the tenant-wide ones, each with the counts
    /// `total`, `unread` and `urgent` of those not dismissed.
    pub(crate) fn counts(tenant: &str, user: &str, urgent: &[String]) -> Self {
        let mut s = Self::default();
        let tenant = s.param(Arg::Text(tenant.to_owned()));
        let user = s.param(Arg::Text(user.to_owned()));
        let mut priorities: Vec<String> = Vec::new();
        for p in urgent {
            if !priorities.contains(p) {
                priorities.push(p.clone());
            }
        }
        let urgent = if priorities.is_empty() {
            // No priority is urgent: a condition no row meets.
            "1 = 0".to_owned()
        } else {
            let list: Vec<String> = priorities
                .into_iter()
                .map(|p| s.param(Arg::Text(p)))
                .collect();
            format!("n.priority IN ({})", list.join(", "))
        };
        s.text = format!(
            "SELECT COUNT(*) AS total, \
                 COUNT(CASE WHEN n.read_at IS NULL THEN 1 END) AS unread, \
                 COUNT(CASE WHEN n.read_at IS NULL AND {urgent} THEN 1 END) AS urgent \
             FROM notifications n \
             WHERE n.tenant = {tenant} AND n.user_id = {user} AND n.dismissed_at IS NULL \
             UNION ALL \
             SELECT COUNT(*), \
                 COUNT(CASE WHEN r.read_at IS NULL THEN 1 END), \
                 COUNT(CASE WHEN r.read_at IS NULL AND {urgent} THEN 1 END) \
             FROM notifications n \
             LEFT JOIN receipts r ON r.notification_id = n.id AND r.user_id = {user} \
             WHERE n.tenant = {tenant} AND n.user_id IS NULL AND r.dismissed_at IS NULL"
        );
        s
    }
}

/// A filter's conditions, each after ` AND `, on the reader's state in `state` (`n` for the
/// row itself, `r` for the receipt) and on the row `n`'s type and priority, whose placeholders
/// are `kind` and `priority`.
fn conditions(filter: &Filter, state: &str, kind: Option<&str>, priority: Option<&str>) -> String {
    let mut out = String::new();
    let is = |set: bool| if set { "IS NOT NULL" } else { "IS NULL" };
    if let Some(read) = filter.read {
        out.push_str(&format!(" AND {state}.read_at {}", is(read)));
    }
    if let Some(dismissed) = filter.dismissed {
        out.push_str(&format!(" AND {state}.dismissed_at {}", is(dismissed)));
    }
    if let Some(kind) = kind {
        out.push_str(&format!(" AND n.kind = {kind}"));
    }
    if let Some(priority) = priority {
        out.push_str(&format!(" AND n.priority = {priority}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_arguments() {
        let filter = Filter {
            read: Some(false),
            dismissed: None,
            kind: None,
            priority: Some("urgent".into()),
        };
        let s = Statement::list("t", "u", &filter, 100, 21);
        assert_eq!(s.args.len(), 5);
        assert_eq!(s.args[4], Arg::Text("urgent".into()));
        assert!(s.text.contains("n.read_at IS NULL AND n.priority = $5"));
        assert!(s.text.contains("r.read_at IS NULL AND n.priority = $5"));
        assert!(!s.text.contains("$6"));
    }

    #[test]
    fn an_import_numbers_each_rows_parameters() {
        let text = import(2);
        assert!(text.ends_with(
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12), \
             ($1, $2, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"
        ));
        let most = 2 + IMPORT_ROWS * 10;
        assert!(import(IMPORT_ROWS).contains(&format!("${most})")));
        assert!(most <= 32_766);
    }

    #[test]
    fn urgent_priorities_are_listed_once() {
        let urgent = ["high".to_owned(), "urgent".to_owned(), "high".to_owned()];
        let s = Statement::counts("t", "u", &urgent);
        assert_eq!(s.args.len(), 4);
        assert!(s.text.contains("n.priority IN ($3, $4)"));
        let none = Statement::counts("t", "u", &[]);
        assert_eq!(none.args.len(), 2);
        assert!(none.text.contains("1 = 0"));
    }
}
