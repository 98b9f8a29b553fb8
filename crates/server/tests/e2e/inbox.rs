//! The notification inbox, on SQLite (a file in a fresh temporary directory) and on the
//! machine's PostgreSQL (a database made for the test and dropped after): the API, the native
//! `inbox` commands and seed 000's Socket.IO vocabulary on one inbox; users and tenants kept
//! apart whatever ids they send; two connections of one user marking the same notification at
//! once; a server killed and restarted losing nothing it acknowledged; two nodes of a cluster
//! on one database; a locked database answered `inbox_unavailable` without stalling anyone.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cluster::{node_config, Prefix};
use crate::harness::{
    error_code, token, Client, Config, Server, TcpProxy, ACME_KEY, GLOBEX_KEY, RECV_TIMEOUT,
};

/// The database of one test.
enum Db {
    Sqlite(PathBuf),
    Postgres(roomcast_testkit::PgDatabase),
}

impl Db {
    fn sqlite() -> Db {
        let dir = std::env::temp_dir().join(format!(
            "roomcast-inbox-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Db::Sqlite(dir)
    }

    fn postgres() -> Option<Db> {
        roomcast_testkit::shared_postgres().map(Db::Postgres)
    }

    fn url(&self) -> String {
        match self {
            Db::Sqlite(dir) => format!("sqlite://{}", dir.join("inbox.db").display()),
            Db::Postgres(db) => db.url().to_owned(),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::Sqlite(dir) = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs a scenario on SQLite and on PostgreSQL.
macro_rules! on_both_databases {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn sqlite() {
                super::$scenario(super::Db::sqlite()).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(db) = super::Db::postgres() {
                    super::$scenario(db).await;
                }
            }
        }
    )*};
}

on_both_databases!(
    the_api_and_both_protocols_share_one_inbox,
    racing_reads_of_one_notification_change_it_once,
    a_killed_server_loses_nothing_it_acknowledged,
    two_nodes_share_one_database,
);

/// The harness defaults with the inbox on `db` and seed 000's notification routes on `/`.
fn inbox_config(config: Config, db: &Db) -> Config {
    inbox_at(config, &db.url())
}

/// [`inbox_config`] with the database at `url`.
fn inbox_at(config: Config, url: &str) -> Config {
    config
        .set("inbox.database", &format!("{url:?}"))
        .set("inbox.urgent", r#"["high", "urgent"]"#)
        .with(
            r#"
[[socketio.namespaces]]
name = "/"
[[socketio.namespaces.events]]
event = "get_notification_counts"
action = "inbox"
op = "counts"
reply = { event = "notification_counts" }
[[socketio.namespaces.events]]
event = "mark_notification_read"
action = "inbox"
op = "read"
reply = { event = "notification_action_completed", data = { action = "read", notification_id = "{result.notification_id}", success = true } }
error = { event = "notification_action_completed", data = { action = "read", success = false, error = "{error}" } }
"#,
        )
}

/// `POST /api/inbox/notifications` with the acme key; asserts 201 and returns the ids.
async fn create(server: &Server, body: Value) -> Vec<i64> {
    let (status, answer) = server
        .api(
            "POST",
            "/api/inbox/notifications",
            Some(ACME_KEY),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(status, 201, "create {body}: {answer}");
    answer["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect()
}

/// A native `inbox` request's reply.
async fn inbox(client: &mut Client, op: &str, extra: Value) -> Value {
    let mut request = json!({"type": "inbox", "op": op});
    if let (Some(req), Value::Object(extra)) = (request.as_object_mut(), extra) {
        req.extend(extra);
    }
    client.request(request).await
}

async fn counts(client: &mut Client) -> Value {
    let reply = inbox(client, "counts", json!({})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    reply["result"].clone()
}

/// The next event named `name`, skipping others.
async fn event_named(client: &mut Client, name: &str) -> Value {
    loop {
        let event = client.recv_event().await;
        if event["event"] == name {
            return event;
        }
    }
}

/// The events named `name` among those received so far.
async fn received(client: &mut Client, name: &str) -> Vec<Value> {
    client.sync().await;
    client
        .take_buffered()
        .into_iter()
        .filter(|e| e["event"] == name)
        .collect()
}

async fn the_api_and_both_protocols_share_one_inbox(db: Db) {
    let server = Server::start(inbox_config(Config::new(), &db)).await;
    let mut a = server.connect_user("7", "acme").await;
    let mut b = server.connect_user("7", "acme").await;
    let mut c = server.connect_user("8", "acme").await;
    let mut other_tenant = server.connect_user("7", "globex").await;

    let ids = create(
        &server,
        json!({"users": ["7", "8"], "title": "New Tenant Created", "message": "Ready",
               "type": "success", "priority": "high", "action_url": "/tenant/acme",
               "metadata": {"tenant_name": "Acme"}}),
    )
    .await;
    assert_eq!(ids.len(), 2);
    let new = event_named(&mut a, "new_notification").await;
    assert_eq!(new["data"]["id"], ids[0], "{new}");
    assert_eq!(new["data"]["title"], "New Tenant Created");
    assert_eq!(new["data"]["is_read"], false);
    assert_eq!(new["data"]["metadata"]["tenant_name"], "Acme");
    assert_eq!(
        event_named(&mut c, "new_notification").await["data"]["id"],
        ids[1]
    );
    assert!(received(&mut other_tenant, "new_notification")
        .await
        .is_empty());
    assert_eq!(
        counts(&mut a).await,
        json!({"total": 1, "unread": 1, "urgent": 1})
    );

    // Read by one connection: told to the user's other one, once.
    let read = inbox(&mut a, "read", json!({"notification": ids[0]})).await;
    assert_eq!(
        read["result"],
        json!({"notification_id": ids[0], "success": true, "changed": true})
    );
    let told = event_named(&mut b, "notification_read").await;
    assert_eq!(told["data"], json!({"notification_id": ids[0]}));
    let again = inbox(&mut b, "read", json!({"notification": ids[0]})).await;
    assert_eq!(again["result"]["changed"], false, "{again}");
    assert!(received(&mut a, "notification_read").await.is_empty());

    // Another user's id, another tenant's user, an unknown id: one answer.
    for (client, id) in [
        (&mut c, ids[0]),
        (&mut other_tenant, ids[0]),
        (&mut a, 1 << 40),
    ] {
        let reply = inbox(client, "dismiss", json!({"notification": id})).await;
        assert_eq!(error_code(&reply), "not_found", "{reply}");
    }
    assert_eq!(counts(&mut c).await["unread"], 1);

    // The API sees the same inbox, within the key's tenant only.
    let (status, listed) = server
        .api(
            "GET",
            "/api/inbox/users/7/notifications",
            Some(ACME_KEY),
            None,
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["notifications"][0]["id"], ids[0]);
    assert_eq!(listed["notifications"][0]["is_read"], true);
    let (status, _) = server
        .api(
            "GET",
            "/api/inbox/users/7/counts?tenant=acme",
            Some(GLOBEX_KEY),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let path = format!("/api/inbox/users/8/notifications/{}/read", ids[0]);
    let (status, answer) = server.api("POST", &path, Some(ACME_KEY), None).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (404, &json!("not_found"))
    );

    // A tenant-wide notification: every user of the tenant, read state per user.
    let all = create(
        &server,
        json!({"tenant_wide": true, "title": "Maintenance"}),
    )
    .await;
    for client in [&mut a, &mut b, &mut c] {
        let new = event_named(client, "new_notification").await;
        assert_eq!(new["data"]["id"], all[0]);
    }
    assert!(received(&mut other_tenant, "new_notification")
        .await
        .is_empty());
    let read_all = inbox(&mut a, "read_all", json!({})).await;
    assert_eq!(read_all["result"], json!({"count": 1}), "{read_all}");
    let told = event_named(&mut b, "all_notifications_read").await;
    assert_eq!(told["data"], json!({"count": 1}));
    assert_eq!(
        counts(&mut b).await,
        json!({"total": 2, "unread": 0, "urgent": 0})
    );
    assert_eq!(
        counts(&mut c).await,
        json!({"total": 2, "unread": 2, "urgent": 1})
    );

    // A page at a time, newest first; filters.
    let page = inbox(&mut c, "list", json!({"options": {"limit": 1}})).await;
    assert_eq!(page["result"]["notifications"][0]["id"], all[0], "{page}");
    let cursor = page["result"]["next_cursor"].clone();
    let next = inbox(
        &mut c,
        "list",
        json!({"options": {"limit": 1, "cursor": cursor}}),
    )
    .await;
    assert_eq!(next["result"]["notifications"][0]["id"], ids[1], "{next}");
    let high = inbox(&mut c, "list", json!({"options": {"priority": "high"}})).await;
    assert_eq!(high["result"]["notifications"].as_array().unwrap().len(), 1);
    let bad = inbox(&mut c, "list", json!({"options": {"limit": 0}})).await;
    assert_eq!(error_code(&bad), "bad_request");

    // Deleted by the backend: gone from the user's inbox.
    let path = format!("/api/inbox/notifications/{}", ids[1]);
    assert_eq!(
        server.api("DELETE", &path, Some(ACME_KEY), None).await.0,
        200
    );
    assert_eq!(
        server.api("DELETE", &path, Some(ACME_KEY), None).await.0,
        404
    );
    assert_eq!(counts(&mut c).await["total"], 1);

    // Seed 000's Socket.IO vocabulary on the same inbox.
    let mut page = server.sio_connect("/", &token("8", "acme")).await;
    page.emit("/", "get_notification_counts", json!([])).await;
    let (_, answer) = page.event("notification_counts").await;
    assert_eq!(answer[0], json!({"total": 1, "unread": 1, "urgent": 0}));
    page.emit(
        "/",
        "mark_notification_read",
        json!([{"notification_id": all[0]}]),
    )
    .await;
    let (_, answer) = page.event("notification_action_completed").await;
    assert_eq!(
        answer[0],
        json!({"action": "read", "notification_id": all[0], "success": true})
    );
    page.emit(
        "/",
        "mark_notification_read",
        json!([{"notification_id": ids[0]}]),
    )
    .await;
    let (_, answer) = page.event("notification_action_completed").await;
    assert_eq!(
        answer[0],
        json!({"action": "read", "success": false, "error": "no such notification"})
    );
    assert_eq!(counts(&mut c).await["unread"], 0);
    assert_eq!(
        server
            .metric("roomcast_inbox_notifications_created_total")
            .await,
        3
    );
}

async fn racing_reads_of_one_notification_change_it_once(db: Db) {
    let server = Server::start(inbox_config(Config::new(), &db)).await;
    let mut a = server.connect_user("7", "acme").await;
    let mut b = server.connect_user("7", "acme").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.extend(create(&server, json!({"user": "7", "title": format!("n{i}")})).await);
    }
    // Both connections send a batch of reads before reading any answer (a batch within
    // `limits.commands_per_connection`, 16 by default, that may wait at once); answers come
    // in any order.
    let mut told: Vec<i64> = Vec::new();
    for chunk in ids.chunks(10) {
        for id in chunk {
            for client in [&mut a, &mut b] {
                let frame = json!({"type": "inbox", "id": id, "op": "read", "notification": id});
                client.send_json(&frame).await;
            }
        }
        let from_a = answers(&mut a, chunk, &mut told).await;
        let from_b = answers(&mut b, chunk, &mut told).await;
        for id in chunk {
            let flags = [&from_a[id], &from_b[id]].map(|r| r["result"]["changed"] == true);
            assert_eq!(flags.iter().filter(|f| **f).count(), 1, "{id}: {flags:?}");
        }
    }
    // Each change told to the other connection only: every id exactly once in all.
    for client in [&mut a, &mut b] {
        told.extend(
            received(client, "notification_read")
                .await
                .iter()
                .map(|e| e["data"]["notification_id"].as_i64().unwrap()),
        );
    }
    told.sort_unstable();
    assert_eq!(told, ids);
    assert_eq!(counts(&mut a).await["unread"], 0);
}

/// The replies to the requests whose ids are `ids`, in whatever order they come; the ids of
/// the `notification_read` events met meanwhile go to `told`.
async fn answers(
    client: &mut Client,
    ids: &[i64],
    told: &mut Vec<i64>,
) -> std::collections::HashMap<i64, Value> {
    let mut found = std::collections::HashMap::new();
    while found.len() < ids.len() {
        let Some(crate::harness::Incoming::Json(value)) = client.next_within(RECV_TIMEOUT).await
        else {
            panic!("answers to {ids:?}: only {found:?}");
        };
        match value["type"].as_str() {
            Some("reply") => {
                found.insert(value["id"].as_i64().unwrap(), value);
            }
            Some("event") if value["event"] == "notification_read" => {
                told.push(value["data"]["notification_id"].as_i64().unwrap());
            }
            Some("event") => {}
            _ => panic!("unexpected {value}"),
        }
    }
    found
}

async fn a_killed_server_loses_nothing_it_acknowledged(db: Db) {
    let server = Server::start(inbox_config(Config::new(), &db)).await;
    let mut created = Vec::new();
    for i in 0..50 {
        created.extend(create(&server, json!({"user": "7", "title": format!("n{i}")})).await);
    }
    let mut client = server.connect_user("7", "acme").await;
    let read = inbox(&mut client, "read", json!({"notification": created[3]})).await;
    assert_eq!(read["result"]["changed"], true);
    // SIGKILL: no shutdown, no flush.
    drop(client);
    drop(server);
    let server = Server::start(inbox_config(Config::new(), &db)).await;
    let mut client = server.connect_user("7", "acme").await;
    assert_eq!(
        counts(&mut client).await,
        json!({"total": 50, "unread": 49, "urgent": 0})
    );
    let page = inbox(&mut client, "list", json!({"options": {"limit": 200}})).await;
    let mut listed: Vec<i64> = page["result"]["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_i64().unwrap())
        .collect();
    listed.reverse();
    assert_eq!(listed, created);
}

async fn two_nodes_share_one_database(db: Db) {
    let Some(redis) = roomcast_testkit::shared_redis() else {
        return;
    };
    let prefix = Prefix::new("inbox");
    let a = Server::start(inbox_config(node_config(&redis, &prefix, "a"), &db)).await;
    let b = Server::start(inbox_config(node_config(&redis, &prefix, "b"), &db)).await;
    let mut on_a = a.connect_user("7", "acme").await;
    let mut on_b = b.connect_user("7", "acme").await;
    // Created through node a: the user's connection on node b hears of it.
    let mut heard = None;
    for _ in 0..50 {
        create(&a, json!({"user": "7", "title": "cluster"})).await;
        if let Some(event) = on_b.next_event_within(Duration::from_millis(200)).await {
            assert_eq!(event["event"], "new_notification");
            heard = event["data"]["id"].as_i64();
            break;
        }
    }
    let id = heard.expect("node b's client never heard of a notification made on node a");
    // Read on node b: node a's connection is told, and node a's API sees it.
    let read = inbox(&mut on_b, "read", json!({"notification": id})).await;
    assert_eq!(read["result"]["changed"], true, "{read}");
    loop {
        let event = event_named(&mut on_a, "notification_read").await;
        if event["data"]["notification_id"] == id {
            break;
        }
    }
    let path = "/api/inbox/users/7/notifications?read=true";
    let (status, listed) = a.api("GET", path, Some(ACME_KEY), None).await;
    assert_eq!(status, 200);
    let read: Vec<&Value> = listed["notifications"].as_array().unwrap().iter().collect();
    assert_eq!(read.len(), 1, "{listed}");
    assert_eq!(read[0]["id"], id);
}

/// SQLite's write lock held by another process past `inbox.timeout_ms`: the writes answer
/// `inbox_unavailable`, counted and shown in `/health`, while the same connection's pings and
/// deliveries go on; once the lock is gone, the inbox serves again.
#[tokio::test]
async fn a_locked_database_answers_unavailable_and_stalls_no_one() {
    use sqlx::Connection as _;
    let db = Db::sqlite();
    let server =
        Server::start(inbox_config(Config::new(), &db).set("inbox.timeout_ms", "300")).await;
    let id = create(&server, json!({"user": "7", "title": "before"})).await[0];
    let mut client = server.connect_user("7", "acme").await;
    let mut locker = sqlx::SqliteConnection::connect(&db.url()).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .unwrap();

    let reply = inbox(&mut client, "read", json!({"notification": id})).await;
    assert_eq!(error_code(&reply), "inbox_unavailable", "{reply}");
    client.sync().await;
    server
        .publish(json!({"tenant": "acme", "users": ["7"], "event": "still-here", "data": 1}))
        .await;
    assert_eq!(event_named(&mut client, "still-here").await["data"], 1);
    let (status, health) = server.api("GET", "/health", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(health["inbox"]["state"], "degraded", "{health}");
    assert_eq!(health["status"], "degraded");

    sqlx::query("COMMIT").execute(&mut locker).await.unwrap();
    let reply = inbox(&mut client, "read", json!({"notification": id})).await;
    assert_eq!(reply["result"]["changed"], true, "{reply}");
    let (_, health) = server.api("GET", "/health", None, None).await;
    assert_eq!(health["inbox"]["state"], "up", "{health}");
    assert!(health["inbox"]["failed_operations"].as_u64().unwrap() >= 1);
}

/// The database host gone (PostgreSQL behind a relay the test cuts): requests answer
/// `inbox_unavailable` within `inbox.timeout_ms` and the API 503, the rest of the connection
/// goes on, `/health` says degraded; once the host is back, the inbox serves again.
#[tokio::test]
async fn a_database_that_goes_away_answers_unavailable_then_recovers() {
    let Some(pg) = roomcast_testkit::shared_postgres() else {
        return;
    };
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = pg
        .url()
        .replace("127.0.0.1:5432", &proxy.addr().to_string());
    let config = inbox_at(Config::new(), &url).set("inbox.timeout_ms", "500");
    let server = Server::start(config).await;
    let id = create(&server, json!({"user": "7", "title": "before"})).await[0];
    let mut client = server.connect_user("7", "acme").await;

    proxy.set_down(true);
    let reply = inbox(&mut client, "read", json!({"notification": id})).await;
    assert_eq!(error_code(&reply), "inbox_unavailable", "{reply}");
    let body = json!({"user": "7", "title": "while down"}).to_string();
    let (status, answer) = server
        .api(
            "POST",
            "/api/inbox/notifications",
            Some(ACME_KEY),
            Some(&body),
        )
        .await;
    assert_eq!(status, 503, "{answer}");
    server
        .publish(json!({"tenant": "acme", "users": ["7"], "event": "still-here", "data": 1}))
        .await;
    assert_eq!(event_named(&mut client, "still-here").await["data"], 1);
    let (_, health) = server.api("GET", "/health", None, None).await;
    assert_eq!(health["inbox"]["state"], "degraded", "{health}");

    proxy.set_down(false);
    let mut recovered = false;
    for _ in 0..40 {
        let reply = inbox(&mut client, "read", json!({"notification": id})).await;
        if reply["ok"] == true {
            assert_eq!(reply["result"]["changed"], true, "{reply}");
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(recovered, "the inbox never served again");
    assert_eq!(counts(&mut client).await["unread"], 0);
}

/// Without `[inbox]`: the native command and the API say so.
#[tokio::test]
async fn without_an_inbox_the_requests_say_so() {
    let server = Server::start_default().await;
    let mut client = server.connect_user("7", "acme").await;
    let reply = inbox(&mut client, "counts", json!({})).await;
    assert_eq!(error_code(&reply), "not_kept");
    let (status, _) = server
        .api("GET", "/api/inbox/users/7/counts", Some(ACME_KEY), None)
        .await;
    assert_eq!(status, 404);
}
