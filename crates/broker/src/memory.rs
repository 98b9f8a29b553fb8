//! [`MemoryBroker`]: the single-node broker, the embedded default. It keeps a stream counter
//! for every room this node has members in, gives each publication its positions, and
//! delivers it at once through the node's [`Deliver`] sink, in publish order per room.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::broker::{BoxFuture, Broker, BrokerError, Deliver, Published};
use crate::publication::{Position, Publication, RoomKey};

/// Stripes of the broker's locks: rooms rarely share one.
const STRIPES: usize = 64;

/// A room's stream: the next offset and the epoch its offsets belong to (a number; its
/// text made on the first publish, so that rooms nobody publishes to cost no string).
#[derive(Debug)]
struct Stream {
    next: u64,
    epoch: u64,
    epoch_text: Option<Arc<str>>,
}

/// The locks and streams of the rooms whose key hashes to one stripe.
#[derive(Debug, Default)]
struct Stripe {
    // Publish order: held from a position's assignment to the last queue push, so that racing
    // publishers reach every queue of a room in offset order. A std mutex: the delivery it
    // covers is synchronous.
    order: Mutex<()>,
    // A std mutex, and a leaf: held to read or update one entry, never while another lock is
    // taken after it or across an `.await`. `subscribe` runs under the room index's write
    // lock and publishers take it while holding an order lock and the index's read lock, so
    // nothing may be locked after it. Striped like the order, so that publishers to different
    // rooms do not meet on one lock.
    streams: Mutex<HashMap<RoomKey, Stream>>,
}

/// The in-process broker of one node.
///
/// A room has a stream while this node has members in it: created when the first member
/// joins, dropped when the last one leaves, so offsets restart at 1 under a new epoch, as a
/// client resuming after an empty room must learn. A room without members gets no position
/// (the publication's other targets are still served).
#[derive(Debug)]
pub struct MemoryBroker {
    sink: Arc<dyn Deliver>,
    stripes: Box<[Stripe]>,
    hasher: RandomState,
    epoch_prefix: String,
    epochs: AtomicU64,
}

impl MemoryBroker {
    /// A broker delivering to `sink`; `epoch_prefix` tells this process's epochs from
    /// earlier ones.
    pub fn new(sink: Arc<dyn Deliver>, epoch_prefix: impl Into<String>) -> Self {
        Self {
            sink,
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            hasher: RandomState::new(),
            epoch_prefix: epoch_prefix.into(),
            epochs: AtomicU64::new(0),
        }
    }

    fn streams(&self, stripe: usize) -> MutexGuard<'_, HashMap<RoomKey, Stream>> {
        // Single inserts, removes and increments: a poisoned lock is still consistent.
        self.stripes[stripe]
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn order(&self, stripe: usize) -> MutexGuard<'_, ()> {
        // The guarded value is `()`: a poisoned stripe is as good as a healthy one.
        self.stripes[stripe]
            .order
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn stripe(&self, key: &RoomKey) -> usize {
        (self.hasher.hash_one(key) % STRIPES as u64) as usize
    }

    /// Rooms with a stream (this node has members in them).
    pub fn stream_count(&self) -> usize {
        (0..STRIPES).map(|s| self.streams(s).len()).sum()
    }

    /// Publishes synchronously: the whole work of [`Broker::publish`].
    pub fn publish_now(&self, publication: Publication) -> Published {
        let rooms = publication.target.rooms().len();
        let mut positions: Vec<Option<Position>> = vec![None; rooms];
        // Volatile publications and those without rooms take no position.
        let first = if publication.volatile {
            None
        } else {
            publication.room_key(0)
        };
        let delivered = match first {
            None => self.sink.deliver(&publication, &mut |_| None),
            // The common case, without the lists of the general one.
            Some(key) if rooms == 1 => {
                let stripe = self.stripe(&key);
                let _order = self.order(stripe);
                self.deliver(&publication, &[(key, stripe)], &mut positions)
            }
            Some(_) => {
                let keys: Vec<(RoomKey, usize)> = (0..rooms)
                    .filter_map(|i| publication.room_key(i))
                    .map(|key| {
                        let stripe = self.stripe(&key);
                        (key, stripe)
                    })
                    .collect();
                // Every stripe the rooms fall in, locked in ascending order (no two
                // publishers can wait on each other).
                let mut stripes: Vec<usize> = keys.iter().map(|(_, s)| *s).collect();
                stripes.sort_unstable();
                stripes.dedup();
                let _order: Vec<MutexGuard<'_, ()>> =
                    stripes.iter().map(|&s| self.order(s)).collect();
                self.deliver(&publication, &keys, &mut positions)
            }
        };
        Published {
            positions,
            delivered,
        }
    }

    /// Delivers with the order locks of `keys` (each room's key and stripe) held, recording
    /// in `positions` the position each room is given.
    fn deliver(
        &self,
        publication: &Publication,
        keys: &[(RoomKey, usize)],
        positions: &mut [Option<Position>],
    ) -> usize {
        // Asked by the hub under the room index's lock, for rooms with members: their
        // streams exist (created and dropped under the index's write lock).
        let mut next = |i: usize| -> Option<Position> {
            let (key, stripe) = keys.get(i)?;
            let position = self.next_position(key, *stripe);
            if let Some(slot) = positions.get_mut(i) {
                slot.clone_from(&position);
            }
            position
        };
        self.sink.deliver(publication, &mut next)
    }

    /// The next position of a room's stream, `None` when it has none.
    fn next_position(&self, key: &RoomKey, stripe: usize) -> Option<Position> {
        let mut streams = self.streams(stripe);
        let s = streams.get_mut(key)?;
        let offset = s.next;
        s.next += 1;
        let epoch = s
            .epoch_text
            .get_or_insert_with(|| format!("{}-{:x}", self.epoch_prefix, s.epoch).into())
            .clone();
        Some(Position { offset, epoch })
    }
}

impl Broker for MemoryBroker {
    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<Published, BrokerError>> {
        let published = self.publish_now(publication);
        Box::pin(std::future::ready(Ok(published)))
    }

    fn subscribe(&self, room: &RoomKey) {
        let epoch = self.epochs.fetch_add(1, Ordering::Relaxed) + 1;
        self.streams(self.stripe(room))
            .entry(room.clone())
            .or_insert(Stream {
                next: 1,
                epoch,
                epoch_text: None,
            });
    }

    fn unsubscribe(&self, room: &RoomKey) {
        self.streams(self.stripe(room)).remove(room);
    }
}

#[cfg(test)]
mod tests {
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
    async fn history_is_unsupported() {
        let broker = MemoryBroker::new(Arc::new(Recorder::default()), "p");
        let key = RoomKey::new("t", "/", "a");
        assert_eq!(
            broker.history(&key, None, 10).await.err(),
            Some(BrokerError::HistoryUnsupported)
        );
    }
}
