//! The memory broker's tests: offsets, history, recovery.

use super::*;
use crate::publication::{Payload, Target};
use serde_json::value::RawValue;

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<Vec<Option<u64>>>>);

/// Asks the position of every room, as a hub does for rooms with members.
impl Deliver for Recorder {
    fn deliver(
        &self,
        p: &Publication,
        position: &mut dyn FnMut(usize) -> Option<Position>,
    ) -> usize {
        let offsets = (0..p.target.rooms().len())
            .map(|i| position(i).map(|p| p.offset))
            .collect();
        self.0.lock().unwrap().push(offsets);
        1
    }
}

fn to_rooms(rooms: &[&str]) -> Publication {
    Publication::new(
        "/",
        Target::Tenant {
            tenant: "t".into(),
            rooms: rooms.iter().map(|r| (*r).into()).collect(),
            users: vec![],
        },
        "e",
        Payload::Json(RawValue::from_string("1".into()).unwrap()),
    )
}

#[test]
fn offsets_count_per_subscribed_room() {
    let sink = Arc::new(Recorder::default());
    let broker = MemoryBroker::new(sink.clone(), "p");
    broker.subscribe(&RoomKey::new("t", "/", "a"));
    broker.subscribe(&RoomKey::new("t", "/", "b"));
    broker.publish_now(to_rooms(&["a"]));
    let p = broker.publish_now(to_rooms(&["a", "b", "none"]));
    assert_eq!(p.positions[0].as_ref().map(|p| p.offset), Some(2));
    assert_eq!(p.positions[1].as_ref().map(|p| p.offset), Some(1));
    assert_eq!(p.positions[2], None);
    assert_ne!(
        p.positions[0].as_ref().unwrap().epoch,
        p.positions[1].as_ref().unwrap().epoch
    );
    assert_eq!(
        *sink.0.lock().unwrap(),
        vec![vec![Some(1)], vec![Some(2), Some(1), None]]
    );
}

#[test]
fn a_room_that_empties_restarts_under_a_new_epoch() {
    let broker = MemoryBroker::new(Arc::new(Recorder::default()), "p");
    let key = RoomKey::new("t", "/", "a");
    broker.subscribe(&key);
    let first = broker.publish_now(to_rooms(&["a"])).positions[0].clone();
    broker.unsubscribe(&key);
    assert_eq!(broker.publish_now(to_rooms(&["a"])).positions[0], None);
    assert_eq!(broker.stream_count(), 0);
    broker.subscribe(&key);
    let again = broker.publish_now(to_rooms(&["a"])).positions[0].clone();
    let (first, again) = (first.unwrap(), again.unwrap());
    assert_eq!((first.offset, again.offset), (1, 1));
    assert_ne!(first.epoch, again.epoch);
}

#[test]
fn volatile_publications_take_no_offset() {
    let broker = MemoryBroker::new(Arc::new(Recorder::default()), "p");
    broker.subscribe(&RoomKey::new("t", "/", "a"));
    let mut p = to_rooms(&["a"]);
    p.volatile = true;
    assert_eq!(broker.publish_now(p).positions, vec![None]);
    let next = broker.publish_now(to_rooms(&["a"]));
    assert_eq!(next.positions[0].as_ref().map(|p| p.offset), Some(1));
}

#[tokio::test]
async fn without_a_policy_history_is_unsupported() {
    let broker = MemoryBroker::new(Arc::new(Recorder::default()), "p");
    let key = RoomKey::new("t", "/", "a");
    assert_eq!(
        broker.history(&key, None, 10).await.err(),
        Some(BrokerError::HistoryUnsupported)
    );
}

/// Rooms starting with `h` keep 3 events for 50 ms.
#[derive(Debug)]
struct Rooms;

impl HistoryPolicy for Rooms {
    fn limits(&self, room: &RoomKey) -> Option<HistoryLimits> {
        room.room.starts_with('h').then_some(HistoryLimits {
            max_events: 3,
            max_age: Duration::from_millis(50),
        })
    }
}

fn with_history(max_rooms: usize) -> MemoryBroker {
    MemoryBroker::new(Arc::new(Recorder::default()), "p").with_history(Arc::new(Rooms), max_rooms)
}

fn offsets(h: &History) -> Vec<u64> {
    h.events.iter().map(|(p, _)| p.offset).collect()
}

#[tokio::test]
async fn a_room_with_history_keeps_its_last_events_members_or_not() {
    let broker = with_history(10);
    let key = RoomKey::new("t", "/", "h1");
    // Nobody is in the room: its stream starts with the first publish.
    let first = broker.publish_now(to_rooms(&["h1", "other"]));
    let start = first.positions[0].clone().expect("a position");
    assert_eq!(start.offset, 1);
    assert_eq!(
        first.positions[1], None,
        "no history, no members: no stream"
    );
    for _ in 0..4 {
        broker.publish_now(to_rooms(&["h1"]));
    }
    let all = broker.history(&key, None, 10).await.unwrap();
    assert_eq!(offsets(&all), [3, 4, 5], "the last three");
    assert_eq!(all.current.as_ref().map(|c| c.offset), Some(5));
    // From a kept position: complete; from before the kept ones: not.
    let since = |offset| Position {
        offset,
        epoch: start.epoch.clone(),
    };
    let h = broker.history(&key, Some(since(3)), 10).await.unwrap();
    assert_eq!((offsets(&h), h.complete), (vec![4, 5], true));
    let h = broker.history(&key, Some(since(1)), 10).await.unwrap();
    assert_eq!((offsets(&h), h.complete), (vec![3, 4, 5], false));
    let h = broker.history(&key, Some(since(5)), 10).await.unwrap();
    assert_eq!((offsets(&h), h.complete), (vec![], true));
    let h = broker.history(&key, Some(since(2)), 1).await.unwrap();
    assert_eq!((offsets(&h), h.complete), (vec![3], true), "limited");
    // Another epoch, or an offset the room never had, continues nothing.
    let other = Position {
        offset: 3,
        epoch: "x".into(),
    };
    assert!(
        !broker
            .history(&key, Some(other), 10)
            .await
            .unwrap()
            .complete
    );
    assert!(
        !broker
            .history(&key, Some(since(9)), 10)
            .await
            .unwrap()
            .complete
    );
    // A member joining and leaving keeps the stream and its epoch.
    broker.subscribe(&key);
    broker.unsubscribe(&key);
    let next = broker.publish_now(to_rooms(&["h1"])).positions[0].clone();
    assert_eq!(next, Some(since(6)));
}

#[tokio::test]
async fn kept_events_age_out_and_then_the_room_is_dropped() {
    let broker = with_history(10);
    let key = RoomKey::new("t", "/", "h1");
    broker.publish_now(to_rooms(&["h1"]));
    assert_eq!(broker.history_counts(), (1, 0));
    std::thread::sleep(Duration::from_millis(80));
    let h = broker.history(&key, None, 10).await.unwrap();
    assert!(h.events.is_empty(), "past its age");
    broker.sweep(Instant::now());
    assert_eq!(broker.stream_count(), 0);
    assert_eq!(broker.history_counts(), (0, 0));
    // It starts again under a new epoch.
    let again = broker.publish_now(to_rooms(&["h1"])).positions[0].clone();
    assert_eq!(again.map(|p| p.offset), Some(1));
}

#[test]
fn rooms_past_the_bound_keep_nothing() {
    let broker = with_history(2);
    broker.publish_now(to_rooms(&["h1", "h2", "h3"]));
    assert_eq!(broker.history_counts(), (2, 1));
    // A room with members still gets its position.
    broker.subscribe(&RoomKey::new("t", "/", "h4"));
    let p = broker.publish_now(to_rooms(&["h4"]));
    assert_eq!(p.positions[0].as_ref().map(|p| p.offset), Some(1));
    assert_eq!(broker.history_counts(), (2, 2));
}

#[test]
fn join_since_runs_with_the_history_under_the_room_lock() {
    let broker = with_history(10);
    let key = RoomKey::new("t", "/", "h1");
    let first = broker.publish_now(to_rooms(&["h1"])).positions[0]
        .clone()
        .unwrap();
    broker.publish_now(to_rooms(&["h1"]));
    let mut seen = None;
    broker.join_since(&key, &first, 10, &mut |h| {
        let h = h.unwrap();
        seen = Some((offsets(&h), h.complete));
    });
    assert_eq!(seen, Some((vec![2], true)));
}

/// Records the log offset of every delivery, in delivery order.
#[derive(Debug, Default)]
struct LogOrder(Mutex<Vec<u64>>);

impl Deliver for LogOrder {
    fn deliver(
        &self,
        p: &Publication,
        position: &mut dyn FnMut(usize) -> Option<Position>,
    ) -> usize {
        for i in 0..p.target.rooms().len() {
            position(i);
        }
        if let Some(offset) = &p.log_offset {
            let n = offset.rsplit(':').next().unwrap().parse().unwrap();
            self.0.lock().unwrap().push(n);
        }
        1
    }
}

fn logged(rooms: &[&str]) -> Publication {
    let mut p = to_rooms(rooms);
    p.logged = true;
    p
}

#[test]
fn racing_publishers_deliver_a_tenants_log_in_offset_order() {
    let sink = Arc::new(LogOrder::default());
    let limits = LogLimits {
        max_events: 100_000,
        max_age: Duration::from_secs(60),
        max_total: 100_000,
    };
    let broker = Arc::new(MemoryBroker::new(sink.clone(), "p").with_recovery(limits, 10));
    broker.subscribe(&RoomKey::new("t", "/", "a"));
    broker.subscribe(&RoomKey::new("t", "/", "b"));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let broker = broker.clone();
            std::thread::spawn(move || {
                let room = if i % 2 == 0 { "a" } else { "b" };
                for _ in 0..500 {
                    broker.publish_now(logged(&[room]));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let order = sink.0.lock().unwrap().clone();
    assert_eq!(order.len(), 2000);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "out of order");
}

#[tokio::test]
async fn a_recovery_gets_what_followed_its_offset_and_sessions_are_kept() {
    let sink = Arc::new(LogOrder::default());
    let limits = LogLimits {
        max_events: 2,
        max_age: Duration::from_secs(60),
        max_total: 100,
    };
    let broker = MemoryBroker::new(sink, "p").with_recovery(limits, 10);
    let start = broker.log_position("t", "/").await.unwrap();
    broker.publish_now(logged(&["a"]));
    let mut volatile = logged(&["a"]);
    volatile.logged = false;
    broker.publish_now(volatile);
    broker.publish_now(logged(&["b"]));
    let mut seen = None;
    broker
        .recover("t", "/", &start, 10)
        .await
        .unwrap()
        .finish(&mut |missed| {
            let offsets: Vec<String> = missed.events.iter().map(|(o, _)| o.to_string()).collect();
            seen = Some((offsets, missed.complete));
        });
    assert_eq!(seen, Some((vec!["p:1".to_owned(), "p:2".to_owned()], true)));
    // A third drops the first (max_events 2): the start no longer continues.
    broker.publish_now(logged(&["a"]));
    broker
        .recover("t", "/", &start, 10)
        .await
        .unwrap()
        .finish(&mut |missed| assert!(!missed.complete));
    broker
        .put_session("pid", "s".into(), 1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        broker.take_session("pid").await.unwrap().as_deref(),
        Some("s")
    );
    assert_eq!(broker.take_session("pid").await.unwrap(), None);
}
