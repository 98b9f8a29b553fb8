//! History and native resume on a single node: rooms named in `[history]` keep their last
//! events, members or not; a `subscribe` with `since` gets the events after it, then the live
//! ones, with no gap and no duplicate, or is told plainly that the gap cannot be filled.

use std::time::Duration;

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::{Client, Config, Server, GLOBEX_KEY, PLATFORM_KEY};

/// `order:*` rooms keep their last 5 events for a minute.
fn config() -> Config {
    Config::new().set(
        "history.rooms",
        r#"[{ pattern = "order:*", max_events = 5, max_age_ms = 60000 }]"#,
    )
}

async fn publish(server: &Server, room: &str, n: u64) -> Value {
    let answer = server
        .publish(json!({"tenant": "acme", "rooms": [room], "event": "step", "data": n}))
        .await;
    answer["rooms"][0].clone()
}

async fn resume(client: &mut Client, room: &str, offset: u64, epoch: &str) -> Value {
    client
        .request(json!({
            "type": "subscribe", "room": room,
            "since": {"offset": offset, "epoch": epoch},
        }))
        .await
}

/// The data of the next `n` events, each checked to be of `room` at the next offset.
async fn steps(client: &mut Client, mut offset: u64, n: usize) -> Vec<u64> {
    let mut data = Vec::new();
    for _ in 0..n {
        let event = client.recv_event().await;
        offset += 1;
        assert_eq!(event["offset"], offset, "{event}");
        data.push(event["data"].as_u64().expect("a number"));
    }
    data
}

#[tokio::test]
async fn a_client_resumes_after_its_last_offset_with_no_gap_and_no_duplicate() {
    let server = Server::start(config()).await;
    let mut first = server.connect_user("7", "acme").await;
    first.join("order:1").await;
    for n in 1..=2 {
        publish(&server, "order:1", n).await;
    }
    assert_eq!(steps(&mut first, 0, 2).await, [1, 2]);
    drop(first);
    // Published while the client is away, the room empty.
    let at = publish(&server, "order:1", 3).await;
    let epoch = at["epoch"]
        .as_str()
        .expect("a kept room has a stream")
        .to_owned();
    assert_eq!(at["offset"], 3);
    publish(&server, "order:1", 4).await;

    let mut again = server.connect_user("7", "acme").await;
    let reply = resume(&mut again, "order:1", 2, &epoch).await;
    assert_eq!(
        (
            &reply["ok"],
            &reply["recovered"],
            &reply["offset"],
            &reply["epoch"]
        ),
        (&json!(true), &json!(true), &json!(4), &json!(epoch)),
        "{reply}"
    );
    assert_eq!(
        steps(&mut again, 2, 2).await,
        [3, 4],
        "the missed events, in order"
    );
    publish(&server, "order:1", 5).await;
    assert_eq!(steps(&mut again, 4, 1).await, [5], "then the live ones");
    again.expect_no_message(Duration::from_millis(300)).await;

    // Resuming at the current position recovers nothing, and misses nothing.
    let mut third = server.connect_user("8", "acme").await;
    let reply = resume(&mut third, "order:1", 5, &epoch).await;
    assert_eq!(
        (&reply["recovered"], &reply["offset"]),
        (&json!(true), &json!(5))
    );
    third.expect_no_message(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_gap_that_cannot_be_filled_is_told_not_hidden() {
    let server = Server::start(config()).await;
    let mut epoch = String::new();
    for n in 1..=8 {
        epoch = publish(&server, "order:2", n).await["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    // Only the last 5 are kept: resuming after offset 1 cannot be filled.
    let mut client = server.connect_user("7", "acme").await;
    let reply = resume(&mut client, "order:2", 1, &epoch).await;
    assert_eq!(
        (&reply["recovered"], &reply["offset"], &reply["epoch"]),
        (&json!(false), &json!(8), &json!(epoch)),
        "{reply}"
    );
    client.expect_no_message(Duration::from_millis(300)).await;
    // Still a member: live events arrive.
    publish(&server, "order:2", 9).await;
    assert_eq!(steps(&mut client, 8, 1).await, [9]);
    // From what is still kept, it can.
    let mut other = server.connect_user("8", "acme").await;
    let reply = resume(&mut other, "order:2", 4, &epoch).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(steps(&mut other, 4, 5).await, [5, 6, 7, 8, 9]);
    // Another epoch (a restarted server, say) continues nothing.
    let mut stale = server.connect_user("9", "acme").await;
    let reply = resume(&mut stale, "order:2", 4, "an-old-epoch").await;
    assert_eq!(
        (&reply["recovered"], &reply["offset"]),
        (&json!(false), &json!(9))
    );
    stale.expect_no_message(Duration::from_millis(300)).await;
    // A bad `since` is a bad request.
    let reply = stale
        .request(json!({"type": "subscribe", "room": "order:2", "since": 4}))
        .await;
    assert_eq!(crate::harness::error_code(&reply), "bad_request", "{reply}");
}

/// Publishes keep coming while a client resumes: it gets every offset after its own once, in
/// order, whether the event was kept before its join or delivered after it.
#[tokio::test]
async fn publishes_racing_a_resume_arrive_once_in_order() {
    let server = Server::start(config().set(
        "history.rooms",
        r#"[{ pattern = "order:*", max_events = 1000, max_age_ms = 60000 }]"#,
    ))
    .await;
    let epoch = publish(&server, "order:3", 1).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let publisher = async {
        let mut http = server.http_conn().await;
        for n in 2..=300u64 {
            let body = json!({"tenant": "acme", "rooms": ["order:3"], "event": "step", "data": n});
            http.publish_with(PLATFORM_KEY, &body).await;
        }
    };
    let resumer = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut client = server.connect_user("7", "acme").await;
        let reply = resume(&mut client, "order:3", 1, &epoch).await;
        assert_eq!(reply["recovered"], true, "{reply}");
        client
    };
    let ((), mut client) = tokio::join!(publisher, resumer);
    let data = steps(&mut client, 1, 299).await;
    assert_eq!(data, (2..=300).collect::<Vec<u64>>());
    client.expect_no_message(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn the_api_lists_what_a_room_keeps() {
    let server = Server::start(config()).await;
    for n in 1..=3 {
        publish(&server, "order:9", n).await;
    }
    let (status, all) = server
        .api(
            "GET",
            "/api/history?tenant=acme&room=order:9",
            Some(PLATFORM_KEY),
            None,
        )
        .await;
    assert_eq!(status, 200, "{all}");
    let offsets = |v: &Value| -> Vec<u64> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["offset"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(offsets(&all), [1, 2, 3], "{all}");
    assert_eq!(all["events"][0]["type"], "event");
    assert_eq!(all["events"][0]["room"], "order:9");
    assert_eq!(all["events"][0]["data"], 1);
    assert_eq!(all["current"]["offset"], 3);
    let epoch = all["current"]["epoch"].as_str().unwrap();
    let path = format!("/api/history?tenant=acme&room=order:9&since=1&epoch={epoch}&limit=1");
    let (status, after) = server.api("GET", &path, Some(PLATFORM_KEY), None).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(
        (offsets(&after), &after["complete"]),
        (vec![2], &json!(true))
    );
    // Another tenant's key does not reach it; a bad query is a bad request.
    let (status, _) = server
        .api(
            "GET",
            "/api/history?tenant=acme&room=order:9",
            Some(GLOBEX_KEY),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = server
        .api(
            "GET",
            "/api/history?tenant=acme&room=order:9&since=1",
            Some(PLATFORM_KEY),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(server.metric("roomcast_history_rooms").await, 1);
    // A server keeping no history says so.
    let plain = Server::start_default().await;
    let (status, answer) = plain
        .api(
            "GET",
            "/api/history?tenant=acme&room=order:9",
            Some(PLATFORM_KEY),
            None,
        )
        .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (404, &json!("not_kept")),
        "{answer}"
    );
}

#[tokio::test]
async fn the_history_command_answers_what_a_room_keeps_under_the_acl() {
    let server = Server::start(config()).await;
    for n in 1..=7 {
        publish(&server, "order:5", n).await;
    }
    let mut client = server.connect_user("7", "acme").await;
    let data = |reply: &Value| -> Vec<u64> {
        reply["events"]
            .as_array()
            .unwrap_or_else(|| panic!("no events in {reply}"))
            .iter()
            .map(|e| e["data"].as_u64().unwrap())
            .collect()
    };
    let all = client
        .request(json!({"type": "history", "room": "order:5"}))
        .await;
    assert_eq!(data(&all), [3, 4, 5, 6, 7], "the last 5 are kept: {all}");
    assert_eq!((&all["ok"], &all["offset"]), (&json!(true), &json!(7)));
    assert_eq!(all["events"][0]["offset"], 3);
    let epoch = all["epoch"].as_str().unwrap().to_owned();
    let newest = client
        .request(json!({"type": "history", "room": "order:5", "limit": 2, "reverse": true}))
        .await;
    assert_eq!(data(&newest), [7, 6]);
    let after = client
        .request(json!({"type": "history", "room": "order:5",
                        "since": {"offset": 5, "epoch": epoch}}))
        .await;
    assert_eq!(
        (data(&after), &after["complete"]),
        (vec![6, 7], &json!(true))
    );
    // Not a member: history is read under the subscribe ACL, nothing more.
    client.expect_no_message(Duration::from_millis(200)).await;
    let refused = client
        .request(json!({"type": "history", "room": "secret:1"}))
        .await;
    assert_eq!(
        crate::harness::error_code(&refused),
        "forbidden",
        "{refused}"
    );
    // `chat:*` is allowed but keeps nothing.
    let none = client
        .request(json!({"type": "history", "room": "chat:1"}))
        .await;
    assert_eq!(crate::harness::error_code(&none), "not_kept", "{none}");
}

/// The welcome gives each auto-joined room's position; a client that reconnects names its
/// last positions in `auth.since` (or `?since=`) and gets what it missed after the welcome.
#[tokio::test]
async fn auto_joined_rooms_resume_from_the_auth_message_or_the_url() {
    let server = Server::start(config().set(
        "history.rooms",
        r#"[{ pattern = "user:*", max_events = 50, max_age_ms = 60000 }]"#,
    ))
    .await;
    let publish_user = |n: u64| {
        server.publish(json!({"tenant": "acme", "rooms": ["user:7"], "event": "note", "data": n}))
    };
    let mut first = server.connect_user("7", "acme").await;
    let welcome = first.welcome.clone();
    let at = &welcome["positions"]["user:7"];
    assert_eq!(at["offset"], 0, "{welcome}");
    let epoch = at["epoch"].as_str().expect("an epoch").to_owned();
    assert!(
        welcome["positions"].get("tenant:acme").is_some(),
        "{welcome}"
    );
    publish_user(1).await;
    assert_eq!(steps(&mut first, 0, 1).await, [1]);
    drop(first);
    publish_user(2).await;
    publish_user(3).await;

    // In the auth message.
    let mut again = server.connect_anonymous().await;
    again
        .send_json(
            &json!({"type": "auth", "token": crate::harness::token("7", "acme"),
                           "since": {"user:7": {"offset": 1, "epoch": epoch}}}),
        )
        .await;
    let welcome = again.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(
        welcome["positions"]["user:7"],
        json!({"offset": 3, "epoch": epoch, "recovered": true}),
        "{welcome}"
    );
    assert_eq!(steps(&mut again, 1, 2).await, [2, 3]);
    publish_user(4).await;
    assert_eq!(steps(&mut again, 3, 1).await, [4]);

    // On the URL, with a token in the upgrade; a stale epoch is not recovered.
    let since = json!({"user:7": {"offset": 2, "epoch": "old"}}).to_string();
    let query = format!(
        "token={}&since={}",
        crate::harness::token("7", "acme"),
        percent_encoding::utf8_percent_encode(&since, percent_encoding::NON_ALPHANUMERIC)
    );
    let url = server.ws_url(&query);
    let mut stale = Client::open(url.into_client_request().expect("a valid URL")).await;
    let welcome = stale.recv_json().await;
    assert_eq!(
        welcome["positions"]["user:7"]["recovered"], false,
        "{welcome}"
    );
    stale.expect_no_message(Duration::from_millis(300)).await;
    // A malformed `since` on the URL refuses the upgrade.
    let (status, _) = server.http("GET", "/ws?since=%5B1%5D", None, None).await;
    assert_eq!(status, 400);
}

/// Without `[history]`, a room still resumes at its current position: nothing was missed.
#[tokio::test]
async fn a_room_keeping_nothing_resumes_at_its_current_position() {
    let server = Server::start_default().await;
    let mut member = server.connect_user("7", "acme").await;
    member.join("order:1").await;
    for n in 1..=2 {
        publish(&server, "order:1", n).await;
    }
    let events = steps(&mut member, 0, 2).await;
    assert_eq!(events, [1, 2]);
    let epoch = publish(&server, "order:1", 3).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut other = server.connect_user("8", "acme").await;
    let reply = resume(&mut other, "order:1", 3, &epoch).await;
    assert_eq!(
        (&reply["recovered"], &reply["offset"], &reply["epoch"]),
        (&json!(true), &json!(3), &json!(epoch)),
        "{reply}"
    );
    let mut third = server.connect_user("9", "acme").await;
    let behind = resume(&mut third, "order:1", 1, &epoch).await;
    assert_eq!(
        (&behind["recovered"], &behind["offset"]),
        (&json!(false), &json!(3))
    );
    // A room nobody was in: its stream starts with the join, and the reply says where.
    let fresh = resume(&mut other, "order:99", 5, "gone").await;
    assert_eq!(
        (&fresh["recovered"], &fresh["offset"]),
        (&json!(false), &json!(0)),
        "{fresh}"
    );
}

/// A resume of a room the connection is already in replays nothing: it got it all live.
#[tokio::test]
async fn resuming_a_room_already_joined_replays_nothing() {
    let server = Server::start(config()).await;
    let mut client = server.connect_user("7", "acme").await;
    client.join("order:4").await;
    let epoch = publish(&server, "order:4", 1).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    publish(&server, "order:4", 2).await;
    assert_eq!(steps(&mut client, 0, 2).await, [1, 2]);
    let reply = resume(&mut client, "order:4", 0, &epoch).await;
    assert_eq!(
        (&reply["recovered"], &reply["offset"]),
        (&json!(true), &json!(2)),
        "{reply}"
    );
    client.expect_no_message(Duration::from_millis(300)).await;
}
