//! A room's kept events in cluster mode: a Redis stream beside its offset counter, which the
//! publish script appends to and trims.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use fred::interfaces::{HashesInterface, StreamsInterface};
use roomcast_broker::{BrokerError, History, Position, Publication, RoomKey};

use super::{stream_key, unavailable, RedisBroker};

impl RedisBroker {
    /// [`Broker::history`](roomcast_broker::Broker::history): the room's stream, read whole
    /// (it is bounded by its `MAXLEN`), from the oldest event after `since`.
    pub(super) async fn read_history(
        &self,
        room: &RoomKey,
        since: Option<Position>,
        limit: usize,
    ) -> Result<History, BrokerError> {
        let counter = self.counter_key(room);
        if self.kept(room).is_none() {
            return Err(BrokerError::HistoryUnsupported);
        }
        let work = async {
            let (offset, epoch): (Option<u64>, Option<String>) =
                self.client.hmget(&counter, vec!["o", "e"]).await?;
            let entries: Vec<(String, HashMap<String, String>)> = self
                .client
                .xrange_values(stream_key(&counter), "-", "+", None)
                .await?;
            Ok::<_, fred::error::Error>((offset, epoch, entries))
        };
        let (offset, epoch, entries) = tokio::time::timeout(self.opts.timeout, work)
            .await
            .map_err(|_| unavailable("history timed out"))?
            .map_err(unavailable)?;
        let current = match (offset, epoch) {
            (Some(offset), Some(epoch)) => Some(Position {
                offset,
                epoch: epoch.into(),
            }),
            _ => None,
        };
        let mut events = Vec::new();
        let mut first = None;
        for (_, fields) in entries {
            let (Some(offset), Some(body)) = (
                fields.get("o").and_then(|o| o.parse::<u64>().ok()),
                fields.get("p"),
            ) else {
                continue;
            };
            first.get_or_insert(offset);
            if since.as_ref().is_some_and(|s| offset <= s.offset) || events.len() >= limit {
                continue;
            }
            let Ok(publication) = serde_json::from_str::<Publication>(body) else {
                self.counters.undecodable.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let epoch = current
                .as_ref()
                .map_or_else(|| "".into(), |c| c.epoch.clone());
            events.push((Position { offset, epoch }, Arc::new(publication)));
        }
        let complete = match (&since, &current) {
            (Some(s), Some(c)) => History::continues(s, c, first),
            _ => false,
        };
        Ok(History {
            events,
            current,
            complete,
        })
    }
}
