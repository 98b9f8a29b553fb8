//! Reads at scale: `--rows` notifications bulk-loaded into the fresh database before the server
//! starts (through [`SqlStore::import`], one transaction per user and call), `--heavy` of them
//! for user `heavy` of tenant `bench` and `--per-user` for each of the other users; then, over
//! one keep-alive connection, `--reads` calls of each kind one after the other: the heavy
//! user's counts, first page, a page halfway through their notifications and first unread
//! page, and a light user's counts for comparison.
//!
//! The load comes in rounds, each with a share of the heavy user's notifications and of the
//! other users', so that the heavy user's are spread over the table as a running system's
//! would be. Every 10th of a user's notifications is of high priority, every 5th a warning,
//! and two of three are read: an unread page skips two read notifications for each it keeps.

use std::ops::Range;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use http::StatusCode;
use roomcast_inbox::{Filter, NewNotification, Owner, SqlStore, Store, StoreOptions};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::api::{excerpt, Api};
use super::database::{Fresh, Kind};
use super::{finish, start, Args, TENANT};
use crate::scenario::r3;
use crate::stats::Latency;
use crate::target::random_text;

/// The user with many notifications.
const HEAVY: &str = "heavy";
/// Rounds of the load.
const ROUNDS: u64 = 100;
/// Calls of each kind made before the measured ones: the first of a kind may read from disk
/// what the next find in memory.
const WARMUP_CALLS: u64 = 5;
/// How long a statement of the load may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// The size of the pages asked for.
const PAGE: usize = 50;
/// The server's `max_per_user` at least: far above the heavy user's, so that nothing loaded is
/// dropped.
const MAX_PER_USER: u64 = 200_000;

/// Who gets how many notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    heavy: u64,
    light_users: u64,
    per_user: u64,
    rounds: u64,
}

impl Plan {
    fn new(args: &Args) -> Plan {
        let light_users = args.rows.saturating_sub(args.heavy) / args.per_user;
        Plan {
            heavy: args.heavy,
            light_users,
            per_user: args.per_user,
            rounds: ROUNDS.min(light_users).max(1),
        }
    }

    fn rows(&self) -> u64 {
        self.heavy + self.light_users * self.per_user
    }

    /// The heavy user's notifications (their indices) loaded in round `round`.
    fn heavy_in(&self, round: u64) -> Range<u64> {
        self.heavy * round / self.rounds..self.heavy * (round + 1) / self.rounds
    }

    /// The light users loaded in round `round`.
    fn light_in(&self, round: u64) -> Range<u64> {
        self.light_users * round / self.rounds..self.light_users * (round + 1) / self.rounds
    }

    /// The heavy user's counts, `{total, unread, urgent}` with `urgent` the unread of high
    /// priority, as [`row`] makes them.
    fn heavy_counts(&self) -> Value {
        let every = |n: u64| self.heavy.div_ceil(n);
        json!({"total": self.heavy, "unread": every(3), "urgent": every(30)})
    }

    /// The light user whose counts are read.
    fn light_user(&self) -> String {
        format!("u{}", self.light_users / 2)
    }
}

/// A user's `own`-th notification, the load's `global`-th, created `global` ms after `base_ms`.
fn row(global: u64, own: u64, base_ms: i64) -> (NewNotification, i64, Option<i64>) {
    let created_at = base_ms + global as i64;
    let notification = NewNotification {
        title: format!("Order {global} shipped"),
        message: "Your order has shipped and should arrive within three days.".into(),
        kind: if own.is_multiple_of(5) {
            "warning"
        } else {
            "info"
        }
        .into(),
        priority: if own.is_multiple_of(10) {
            "high"
        } else {
            "medium"
        }
        .into(),
        action_url: Some(format!("https://shop.example/orders/{global}")),
        action_label: Some("Track".into()),
        metadata: Some(json!({"source": "orders"})),
        data: None,
    };
    let read_at = (!own.is_multiple_of(3)).then_some(created_at + 1_000);
    (notification, created_at, read_at)
}

/// Loads the fresh database `db` and measures the reads: the result's `load` and `reads` (the
/// latter an error of its own when only the reads failed).
pub(super) async fn measure(args: &Args, db: &mut Fresh) -> Result<(Value, Value)> {
    let plan = Plan::new(args);
    let (load, cursor) = load(&plan, db).await.context("the load")?;
    eprintln!("inbox / {}: loaded {load}", db.kind().name());
    let (secret, key) = (random_text(), random_text());
    let settings = format!("max_per_user = {}", plan.heavy.max(MAX_PER_USER));
    let reads = match start(&args.programs, &db.url, &settings, &secret, &key).await {
        Ok(server) => {
            let outcome = reads(args, &plan, &server, &key, cursor).await;
            finish(server, outcome).await
        }
        Err(e) => Err(e),
    };
    let reads = reads.unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
    Ok((load, reads))
}

/// Loads `plan`'s notifications: the load's figures, and the id halfway through the heavy
/// user's notifications (the last of the newer half) for the deep page.
async fn load(plan: &Plan, db: &mut Fresh) -> Result<(Value, i64)> {
    // A statement of the load, or the listing of half the heavy user's notifications, may take
    // longer than a server's call is allowed to.
    let options = StoreOptions {
        acquire_timeout: LOAD_TIMEOUT,
        busy_timeout: LOAD_TIMEOUT,
        ..StoreOptions::new(db.url.clone())
    };
    let store = SqlStore::connect(&options).await?;
    let now_ms = crate::wire::unix_now().as_millis() as i64;
    // In the past, so that none is in the future, and far within the server's maximum age.
    let base_ms = now_ms - plan.rows() as i64 - 600_000;
    let mut global = 0;
    let mut next = |own: u64| {
        global += 1;
        row(global - 1, own, base_ms)
    };
    let mut transactions = 0u64;
    let started = Instant::now();
    for round in 0..plan.rounds {
        let heavy: Vec<_> = plan.heavy_in(round).map(&mut next).collect();
        store.import(TENANT, Some(HEAVY), &heavy).await?;
        transactions += 1;
        for user in plan.light_in(round) {
            let rows: Vec<_> = (0..plan.per_user).map(&mut next).collect();
            store
                .import(TENANT, Some(&format!("u{user}")), &rows)
                .await?;
            transactions += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    db.analyze().await?;
    let analyze_secs = started.elapsed().as_secs_f64();
    let half = u32::try_from((plan.heavy / 2).max(1)).unwrap_or(u32::MAX);
    let heavy = Owner::new(TENANT, HEAVY);
    let cursor = store
        .list(&heavy, &Filter::default(), None, half)
        .await?
        .next
        .context("the heavy user has no older half")?;
    store.close().await;
    let rows = plan.rows();
    let load = json!({
        "rows": rows,
        "heavy": plan.heavy,
        "users": plan.light_users + 1,
        "per_user": plan.per_user,
        "transactions": transactions,
        "secs": r3(secs),
        "rows_per_sec": r3(rows as f64 / secs.max(1e-9)),
        "analyze_secs": (db.kind() == Kind::Postgres).then(|| r3(analyze_secs)),
        "database_bytes": db.size_bytes().await?,
    });
    Ok((load, cursor))
}

async fn reads(
    args: &Args,
    plan: &Plan,
    server: &crate::server::ServerProcess,
    key: &str,
    cursor: i64,
) -> Result<Value> {
    let mut api = Api::connect(server.addr(), key).await?;
    let light = plan.light_user();
    let counts = |user: &str| format!("/api/inbox/users/{user}/counts?tenant={TENANT}");
    let page = |query: &str| {
        format!("/api/inbox/users/{HEAVY}/notifications?tenant={TENANT}&limit={PAGE}{query}")
    };
    // What the server counts is what was loaded.
    let heavy = call(&mut api, &counts(HEAVY)).await?;
    if heavy != plan.heavy_counts() {
        bail!(
            "the heavy user's counts are {heavy}, not {}",
            plan.heavy_counts()
        );
    }
    let kinds = [
        ("heavy_counts", counts(HEAVY)),
        ("first_page", page("")),
        ("deep_page", page(&format!("&cursor={cursor}"))),
        ("unread_page", page("&read=false")),
        ("light_counts", counts(&light)),
    ];
    let mut result = json!({
        "calls": args.reads,
        "page": PAGE,
        "heavy": heavy,
        "light_user": light,
        "light": call(&mut api, &counts(&light)).await?,
        "cursor": cursor,
    });
    for (name, path) in kinds {
        for _ in 0..WARMUP_CALLS {
            let answer = call(&mut api, &path).await?;
            check(name, &answer)?;
        }
        let mut hist = Latency::histogram();
        for _ in 0..args.reads {
            let started = Instant::now();
            call(&mut api, &path).await?;
            let _ = hist.record((started.elapsed().as_micros() as u64).max(1));
        }
        result[name] = Latency::of(&hist).to_json();
    }
    eprintln!("inbox: reads {result}");
    Ok(result)
}

/// `GET path`'s answer, which must be 200 and JSON.
async fn call(api: &mut Api, path: &str) -> Result<Value> {
    let (status, body) = api.get(path).await?;
    if status != StatusCode::OK {
        bail!("GET {path}: HTTP {status}: {}", excerpt(&body));
    }
    serde_json::from_slice(&body).with_context(|| format!("GET {path}: {}", excerpt(&body)))
}

/// Fails unless a page is full, and an unread page unread.
fn check(kind: &str, answer: &Value) -> Result<()> {
    let Some(notifications) = answer["notifications"].as_array() else {
        return Ok(());
    };
    if notifications.len() != PAGE {
        bail!("{kind}: {} notifications, not {PAGE}", notifications.len());
    }
    if kind == "unread_page" && notifications.iter().any(|n| n["is_read"] != false) {
        bail!("{kind}: a read notification in the unread page");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_shares_every_row_out_once() {
        let plan = Plan {
            heavy: 2_000,
            light_users: 180,
            per_user: 100,
            rounds: 100,
        };
        assert_eq!(plan.rows(), 20_000);
        let heavy: u64 = (0..plan.rounds)
            .map(|r| plan.heavy_in(r).count() as u64)
            .sum();
        let light: u64 = (0..plan.rounds)
            .map(|r| plan.light_in(r).count() as u64)
            .sum();
        assert_eq!((heavy, light), (2_000, 180));
        assert_eq!(plan.heavy_in(99).end, 2_000);
        assert_eq!(plan.light_user(), "u90");
    }

    #[test]
    fn the_expected_counts_follow_the_rows() {
        let plan = Plan {
            heavy: 100,
            light_users: 1,
            per_user: 1,
            rounds: 1,
        };
        let rows: Vec<_> = (0..100).map(|own| row(own, own, 0)).collect();
        let unread: Vec<_> = rows.iter().filter(|r| r.2.is_none()).collect();
        let urgent = unread.iter().filter(|r| r.0.priority == "high").count();
        assert_eq!(
            plan.heavy_counts(),
            json!({"total": 100, "unread": unread.len(), "urgent": urgent})
        );
    }
}
