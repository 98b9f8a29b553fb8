//! Requests between nodes: asking every other live node and gathering the answers, and
//! answering the requests that arrive on this node's channel.
//!
//! Both directions are bounded: at most [`MAX_IN_FLIGHT`] of this node's requests wait for
//! answers (past that, a request is answered at once with [`TOO_MANY`] for every node), and at
//! most [`MAX_HANDLING`] requests from others run at once (past that, the asking node gets
//! [`BUSY`]). A reply that comes after its request gave up finds no waiter and is dropped.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use fred::interfaces::PubsubInterface;
use fred::types::{Message, Value as RedisValue};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit};
use tokio::time::{timeout, timeout_at, Instant};

use super::heartbeat;
use super::types::{NodeAnswer, TIMED_OUT};
use super::wire::{answer_of, Envelope, MAX_MESSAGE_BYTES};
use super::Shared;
use crate::error::RedisError;

/// The most requests of this node waiting for answers at once.
pub(super) const MAX_IN_FLIGHT: usize = 1024;
/// The most requests from other nodes handled at once.
pub(super) const MAX_HANDLING: usize = 64;
/// The answer for every node when [`MAX_IN_FLIGHT`] requests already wait.
pub(super) const TOO_MANY: &str = "too many requests in flight";
/// The answer of a node already handling [`MAX_HANDLING`] requests.
const BUSY: &str = "busy: too many requests being handled";
/// The answer of a node whose answer would be too large to send.
const TOO_LARGE: &str = "answer too large";

/// One answer on its way to the request that waits for it: the node's id and its answer.
type Delivery = (String, Result<Value, String>);

/// The requests of this node that wait for answers, by id.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// A std mutex: held for one map operation, never across an `.await`.
    waiters: Mutex<HashMap<u64, mpsc::Sender<Delivery>>>,
}

/// A request's place in [`Pending`], freed on drop, so a request that is cancelled or
/// finishes leaves nothing behind.
struct Waiter<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.id);
    }
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<Delivery>>> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers request `id`, unless [`MAX_IN_FLIGHT`] requests already wait.
    fn register(&self, id: u64, answers: mpsc::Sender<Delivery>) -> Option<Waiter<'_>> {
        let mut waiters = self.lock();
        if waiters.len() >= MAX_IN_FLIGHT {
            return None;
        }
        waiters.insert(id, answers);
        Some(Waiter { pending: self, id })
    }

    /// Hands an answer to the request waiting for it. The channel has room for one answer
    /// per node asked; anything past that (a duplicate) is dropped, as is an answer for a
    /// request that no longer waits.
    fn deliver(&self, id: u64, delivery: Delivery) {
        if let Some(answers) = self.lock().get(&id) {
            let _ = answers.try_send(delivery);
        }
    }

    /// How many requests wait.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Sends `body` to every live node but this one and waits for their answers, at most
/// `shared.timeout` from the call, listing included.
pub(super) async fn ask_all(shared: &Shared, body: Value) -> Result<Vec<NodeAnswer>, RedisError> {
    let deadline = Instant::now() + shared.timeout;
    let others: Vec<String> = timeout_at(deadline, heartbeat::live(shared))
        .await??
        .into_iter()
        .map(|node| node.id)
        .filter(|id| *id != shared.info.id)
        .collect();
    if others.is_empty() {
        return Ok(Vec::new());
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let message = Envelope::Request {
        id,
        from: shared.info.id.clone(),
        reply_to: shared.channel.clone(),
        body,
    }
    .encode();
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(RedisError::Invalid(format!(
            "a request to other nodes is at most {MAX_MESSAGE_BYTES} bytes"
        )));
    }
    let (tx, mut rx) = mpsc::channel(others.len());
    let Some(_waiter) = shared.pending.register(id, tx) else {
        let answer = Err(TOO_MANY.to_owned());
        return Ok(others
            .into_iter()
            .map(|node| NodeAnswer {
                node,
                answer: answer.clone(),
            })
            .collect());
    };

    let mut answers: Vec<Option<Result<Value, String>>> = vec![None; others.len()];
    // Encoded once, sent to every node in one round trip.
    let message = Bytes::from(message);
    let pipeline = shared.client.pipeline();
    for node in &others {
        let () = pipeline
            .publish(
                shared.keys.node_channel(node),
                RedisValue::Bytes(message.clone()),
            )
            .await?;
    }
    if let Ok(sent) = timeout_at(deadline, pipeline.try_all::<i64>()).await {
        for (answer, result) in answers.iter_mut().zip(sent) {
            if let Err(e) = result {
                *answer = Some(Err(RedisError::from(e).to_string()));
            }
        }
    }

    let index: HashMap<&str, usize> = others
        .iter()
        .enumerate()
        .map(|(i, node)| (node.as_str(), i))
        .collect();
    let mut waiting = answers.iter().filter(|a| a.is_none()).count();
    while waiting > 0 {
        let Ok(Some((from, answer))) = timeout_at(deadline, rx.recv()).await else {
            break;
        };
        if let Some(slot) = index.get(from.as_str()).and_then(|&i| answers.get_mut(i)) {
            if slot.is_none() {
                *slot = Some(answer);
                waiting -= 1;
            }
        }
    }
    Ok(others
        .into_iter()
        .zip(answers)
        .map(|(node, answer)| NodeAnswer {
            node,
            answer: answer.unwrap_or_else(|| Err(TIMED_OUT.to_owned())),
        })
        .collect())
}

/// Reads this node's channel until the subscriber closes: replies go to the requests that
/// wait for them, requests to the handler.
pub(super) async fn listen(shared: Arc<Shared>, mut messages: broadcast::Receiver<Message>) {
    loop {
        let message = match messages.recv().await {
            Ok(message) => message,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(node = %shared.info.id, missed, "node channel reader fell behind; messages dropped");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if *message.channel != *shared.channel {
            continue;
        }
        let Some(envelope) = message.value.as_bytes().and_then(Envelope::decode) else {
            tracing::debug!(node = %shared.info.id, "ignored a message that is no request or reply");
            continue;
        };
        match envelope {
            Envelope::Reply {
                id,
                from,
                ok,
                error,
            } => shared.pending.deliver(id, (from, answer_of(ok, error))),
            Envelope::Request {
                id,
                from,
                reply_to,
                body,
            } => accept(&shared, id, &from, reply_to, body).await,
        }
    }
}

/// Starts handling one request, or answers [`BUSY`] at once when too many run.
async fn accept(shared: &Arc<Shared>, id: u64, from: &str, reply_to: String, body: Value) {
    // Replies go only to the asking node's own channel.
    if reply_to != shared.keys.node_channel(from) {
        tracing::warn!(node = %shared.info.id, from, "ignored a request whose reply_to is not its sender's channel");
        return;
    }
    match Arc::clone(&shared.handling).try_acquire_owned() {
        Ok(permit) => {
            tokio::spawn(handle(Arc::clone(shared), permit, id, reply_to, body));
        }
        Err(_) => {
            // Sent from the reader itself, so that overload spawns nothing; the publish has
            // its deadline.
            let busy = Envelope::reply(id, shared.info.id.clone(), Err(BUSY.to_owned()));
            send(shared, reply_to, busy.encode()).await;
        }
    }
}

/// Runs the handler under the deadline and sends its answer.
async fn handle(
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
    id: u64,
    reply_to: String,
    body: Value,
) {
    let answer = timeout(shared.timeout, shared.handler.handle(body))
        .await
        .map_err(|_| TIMED_OUT.to_owned());
    let mut reply = Envelope::reply(id, shared.info.id.clone(), answer).encode();
    if reply.len() > MAX_MESSAGE_BYTES {
        reply = Envelope::reply(id, shared.info.id.clone(), Err(TOO_LARGE.to_owned())).encode();
    }
    send(&shared, reply_to, reply).await;
}

/// Publishes a reply; a failure is logged, and the asking node sees a timeout.
async fn send(shared: &Shared, channel: String, reply: String) {
    match timeout(
        shared.timeout,
        shared.client.publish::<i64, _, _>(channel, reply),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(node = %shared.info.id, error = %e, "could not send a reply");
        }
        Err(_) => {
            tracing::warn!(node = %shared.info.id, "sending a reply timed out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_is_bounded_and_freed_on_drop() {
        let pending = Pending::default();
        let mut waiters = Vec::new();
        for id in 0..MAX_IN_FLIGHT as u64 {
            let (tx, _rx) = mpsc::channel(1);
            waiters.push(pending.register(id, tx));
        }
        assert!(waiters.iter().all(Option::is_some));
        let (tx, _rx) = mpsc::channel(1);
        assert!(pending.register(u64::MAX, tx).is_none());
        waiters.clear();
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn late_and_duplicate_answers_are_dropped() {
        let pending = Pending::default();
        let (tx, mut rx) = mpsc::channel(1);
        let waiter = pending.register(1, tx);
        pending.deliver(1, ("b".into(), Ok(Value::Null)));
        pending.deliver(1, ("b".into(), Ok(Value::Bool(true))));
        assert_eq!(rx.try_recv().ok(), Some(("b".into(), Ok(Value::Null))));
        assert!(rx.try_recv().is_err());
        drop(waiter);
        pending.deliver(1, ("b".into(), Ok(Value::Null)));
        assert!(rx.try_recv().is_err());
    }
}
