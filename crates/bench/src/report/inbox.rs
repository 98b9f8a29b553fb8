//! The notification inbox (`roomcast-bench inbox`), SQLite and PostgreSQL side by side:
//! notifications created and delivered live per second, the latency from a create's request to
//! its user's event, the CPU per notification, the bulk load's rate, and the latency of reads
//! of a user with many notifications among many.

use std::fmt::Write as _;

use serde_json::Value;

use super::{fmt_int, fmt_opt, num, one_line};

/// The scenario's name in the results.
pub(super) const INBOX: &str = "inbox";
/// The databases, in the report's order, with their display names.
pub(super) const DATABASES: [(&str, &str); 2] = [("sqlite", "SQLite"), ("postgres", "PostgreSQL")];

/// The last result of `database`, measured or not.
fn last<'a>(results: &'a [Value], database: &str) -> Option<&'a Value> {
    results
        .iter()
        .rev()
        .find(|r| r["scenario"] == INBOX && r["database"] == database)
}

/// The last result of `database`, if it measured something.
pub(super) fn measured<'a>(results: &'a [Value], database: &str) -> Option<&'a Value> {
    last(results, database).filter(|r| r["available"] == true && r.get("error").is_none())
}

/// `p50 / p99` in milliseconds.
fn p50_p99(latency: &Value) -> String {
    match (num(&latency["p50_ms"]), num(&latency["p99_ms"])) {
        (Some(a), Some(b)) => format!("{a:.2} / {b:.2} ms"),
        _ => "n/a".into(),
    }
}

fn per_sec(v: &Value) -> String {
    fmt_opt(v, |x| format!("{}/s", fmt_int(x)))
}

fn micros(v: &Value) -> String {
    fmt_opt(v, |x| format!("{x:.0} us"))
}

pub(super) fn section(out: &mut String, results: &[Value]) {
    let _ = writeln!(out, "## Notification inbox\n");
    let columns: Vec<(&str, Option<&Value>)> = DATABASES
        .iter()
        .map(|(db, name)| (*name, measured(results, db)))
        .collect();
    let Some(any) = columns.iter().find_map(|(_, r)| *r) else {
        let _ = writeln!(out, "Not measured.");
        notes(out, results);
        out.push('\n');
        return;
    };
    let batch_users = fmt_opt(&any["batch"]["users_per_post"], fmt_int);
    let load = &any["load"];
    let reads = &any["reads"];
    let _ = writeln!(
        out,
        "Roomcast, one node, keeps its inbox on each database in turn: SQLite, a file in WAL \
         mode synced at every commit (`synchronous = FULL`), and PostgreSQL on the same machine, a \
         database of the run's own; each measurement starts on a fresh database. {} native \
         clients, one user each, are welcomed; then {} keep-alive HTTP connections post \
         `POST /api/inbox/notifications` for {} s, each waiting for its answer (201, once \
         stored) before the next: first one user per create, round robin, then all {batch_users} \
         users in each create (one notification each). Latency runs from a create's request \
         to its user's `new_notification` event; every created notification must arrive. CPU \
         runs from a phase's first request to its last delivery; on PostgreSQL, the database's \
         own (its backends serving the run's database) is given apart.\n",
        fmt_opt(&any["clients"], fmt_int),
        fmt_opt(&any["posters"], fmt_int),
        fmt_opt(&any["secs"], fmt_int),
    );
    let _ = writeln!(
        out,
        "For the reads, {} notifications are bulk-loaded (`SqlStore::import`, one transaction \
         per user and call) before the server starts: {} for one user, `heavy`, spread over \
         the table, and {} each for {} other users; every 10th high priority, every 5th a \
         warning, two of three read (PostgreSQL's statistics updated by `ANALYZE` after). Then \
         {} calls of each read, one at a time on one keep-alive connection, after 5 unmeasured \
         ones: pages of {}, the deep page starting halfway through `heavy`'s notifications.\n",
        fmt_opt(&load["rows"], fmt_int),
        fmt_opt(&load["heavy"], fmt_int),
        fmt_opt(&load["per_user"], fmt_int),
        fmt_opt(&load["users"], |x| fmt_int(x - 1.0)),
        fmt_opt(&reads["calls"], fmt_int),
        fmt_opt(&reads["page"], fmt_int),
    );
    let mut head = String::from("| |");
    let mut rule = String::from("|---|");
    for (name, _) in &columns {
        let _ = write!(head, " {name} |");
        rule.push_str("---|");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    type Cell = fn(&Value) -> String;
    let rows: [(String, Cell); 18] = [
        ("Created, one user per create".into(), |r| {
            per_sec(&r["delivery"]["created_per_sec"])
        }),
        ("Create answered (stored), p50 / p99".into(), |r| {
            p50_p99(&r["delivery"]["answer_latency"])
        }),
        ("Delivered live".into(), |r| {
            per_sec(&r["delivery"]["deliveries_per_sec"])
        }),
        ("Create to event, p50 / p99".into(), |r| {
            p50_p99(&r["delivery"]["latency"])
        }),
        ("Missing deliveries".into(), |r| {
            fmt_opt(&r["delivery"]["missing"], fmt_int)
        }),
        ("Failed creates".into(), |r| {
            fmt_opt(&r["delivery"]["errors"], fmt_int)
        }),
        ("Roomcast CPU per notification".into(), |r| {
            micros(&r["delivery"]["cpu_us_per_notification"])
        }),
        ("Database CPU per notification".into(), |r| {
            if r["database"] == "sqlite" {
                "in Roomcast's".into()
            } else {
                micros(&r["delivery"]["database_cpu_us_per_notification"])
            }
        }),
        (format!("Created, {batch_users} users per create"), |r| {
            per_sec(&r["batch"]["created_per_sec"])
        }),
        (
            format!("{batch_users} users per create: create to event, p50 / p99"),
            |r| p50_p99(&r["batch"]["latency"]),
        ),
        (
            format!("{batch_users} users per create: missing deliveries"),
            |r| fmt_opt(&r["batch"]["missing"], fmt_int),
        ),
        (
            format!("{batch_users} users per create: Roomcast CPU per notification"),
            |r| micros(&r["batch"]["cpu_us_per_notification"]),
        ),
        ("Bulk load".into(), |r| {
            let load = &r["load"];
            format!(
                "{} rows/s ({} transactions, {})",
                fmt_opt(&load["rows_per_sec"], fmt_int),
                fmt_opt(&load["transactions"], fmt_int),
                fmt_opt(&load["database_bytes"], |x| format!(
                    "{:.0} MiB on disk",
                    x / 1048576.0
                )),
            )
        }),
        ("`heavy`'s counts, p50 / p99".into(), |r| {
            p50_p99(&r["reads"]["heavy_counts"])
        }),
        ("`heavy`'s first page, p50 / p99".into(), |r| {
            p50_p99(&r["reads"]["first_page"])
        }),
        ("`heavy`'s deep page, p50 / p99".into(), |r| {
            p50_p99(&r["reads"]["deep_page"])
        }),
        ("`heavy`'s first unread page, p50 / p99".into(), |r| {
            p50_p99(&r["reads"]["unread_page"])
        }),
        ("A light user's counts, p50 / p99".into(), |r| {
            p50_p99(&r["reads"]["light_counts"])
        }),
    ];
    for (name, cell) in &rows {
        let mut line = format!("| {name} |");
        for (_, r) in &columns {
            let text = match r {
                Some(r) => cell(r),
                None => "not measured".into(),
            };
            let _ = write!(line, " {text} |");
        }
        let _ = writeln!(out, "{line}");
    }
    notes(out, results);
    out.push('\n');
}

/// Lines for databases not measured, and for the parts of a run that failed.
fn notes(out: &mut String, results: &[Value]) {
    let mut lines = Vec::new();
    for (db, name) in DATABASES {
        let Some(r) = last(results, db) else {
            lines.push(format!("- {name}: not run"));
            continue;
        };
        if r["available"] == false {
            lines.push(format!(
                "- {name}: **not available**: {}",
                r["reason"].as_str().unwrap_or("?")
            ));
            continue;
        }
        let parts = [
            ("the run failed", &r["error"]),
            ("the delivery failed", &r["delivery_error"]),
            ("the reads failed", &r["reads"]["error"]),
            (
                "a create failed (the first failure)",
                &r["delivery"]["first_error"],
            ),
            (
                "a create of many users failed (the first failure)",
                &r["batch"]["first_error"],
            ),
        ];
        for (what, error) in parts {
            if let Some(e) = error.as_str() {
                lines.push(format!("- {name}: **{what}**: {}", one_line(e)));
            }
        }
        for (phase, key) in [("one user per create", "delivery"), ("many users", "batch")] {
            if r[key]["complete"] == false {
                lines.push(format!(
                    "- {name}: **deliveries missing** ({phase}): {} of {}",
                    fmt_opt(&r[key]["missing"], fmt_int),
                    fmt_opt(&r[key]["created"], fmt_int),
                ));
            }
        }
    }
    if !lines.is_empty() {
        let _ = writeln!(out, "\n{}", lines.join("\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn databases_side_by_side_with_the_absent_one_explained() {
        let results = vec![
            json!({"scenario": "inbox", "target": "roomcast-native", "database": "sqlite",
                "available": true, "clients": 100, "posters": 8, "secs": 10,
                "delivery": {"created_per_sec": 2384.5, "deliveries_per_sec": 2384.0,
                    "latency": {"p50_ms": 0.41, "p99_ms": 54.08}, "missing": 0,
                    "complete": true, "errors": 0, "cpu_us_per_notification": 326.0},
                "batch": {"created_per_sec": 8002.3, "users_per_post": 100, "missing": 0,
                    "complete": true},
                "load": {"rows": 1000000, "heavy": 100000, "per_user": 100, "users": 9001,
                    "rows_per_sec": 44509.5, "transactions": 9100, "database_bytes": 268435456},
                "reads": {"calls": 200, "page": 50,
                    "heavy_counts": {"p50_ms": 6.5, "p99_ms": 9.25}}}),
            json!({"scenario": "inbox", "target": "roomcast-native", "database": "postgres",
                "available": false, "reason": "no PostgreSQL at 127.0.0.1:5432"}),
        ];
        let mut out = String::new();
        section(&mut out, &results);
        assert!(out.contains("| | SQLite | PostgreSQL |"), "{out}");
        assert!(out.contains("| Created, one user per create | 2,385/s | not measured |"));
        assert!(out.contains("| Create to event, p50 / p99 | 0.41 / 54.08 ms |"));
        assert!(out.contains("| Created, 100 users per create | 8,002/s |"));
        assert!(out.contains("44,510 rows/s (9,100 transactions, 256 MiB on disk)"));
        assert!(out.contains("| `heavy`'s counts, p50 / p99 | 6.50 / 9.25 ms |"));
        assert!(out.contains("- PostgreSQL: **not available**: no PostgreSQL at"));
        assert!(out.contains("1,000,000 notifications are bulk-loaded"));
        assert!(out.contains("100 each for 9,000 other users"));
    }

    #[test]
    fn a_run_without_the_inbox_says_so() {
        let mut out = String::new();
        section(&mut out, &[]);
        assert!(out.contains("Not measured."), "{out}");
        assert!(out.contains("- SQLite: not run"));
    }
}
