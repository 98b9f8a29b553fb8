//! The consumer loop: connect, declare, consume in order, reconnect.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::watch;

use crate::source::{redact, Source, SourceError};
use crate::status::{Count, SourceStatus};

/// One message, as the handler sees it.
#[derive(Clone, Copy)]
pub struct Message<'a> {
    /// The routing key it was published with.
    pub routing_key: &'a str,
    /// Its body.
    pub body: &'a [u8],
    /// The publisher's `message_id` property, when it set one.
    pub message_id: Option<&'a str>,
    channel: &'a Channel,
}

impl Message<'_> {
    /// Whether this consumer still holds the message: its channel is open, so that an
    /// acknowledgement can still reach the broker. Once not, the broker gives the message to
    /// a consumer again, and a handler waiting on something should give up on it.
    pub fn still_held(&self) -> bool {
        self.channel.status().connected()
    }
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("routing_key", &self.routing_key)
            .field("bytes", &self.body.len())
            .field("message_id", &self.message_id)
            .finish()
    }
}

/// What becomes of a handled message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Done with: acknowledge it.
    Done,
    /// It can never be handled: reject it to the dead-letter queue. The reason is logged.
    Reject(String),
    /// It could not be handled now (what it goes to is unavailable): keep it, and try again.
    Retry,
}

/// Handles messages, one at a time, in the queue's order.
pub trait Handler: Send + Sync + 'static {
    /// Handles one message.
    fn handle<'a>(
        &'a self,
        message: Message<'a>,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>>;
}

/// Consumes `source` until `stop` turns true (or its sender is gone), reconnecting whenever the
/// connection fails. `status` tells whether it is connected and counts what it did.
pub async fn consume(
    source: Source,
    handler: Arc<dyn Handler>,
    status: Arc<SourceStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let (first, longest) = source.backoff;
    let mut wait = first;
    loop {
        let connected = match session(&source, &*handler, &status, &mut stop).await {
            Ok(()) => {
                status.set_connected(false);
                return;
            }
            Err((connected, e)) => {
                status.set_connected(false);
                tracing::warn!(
                    source = %source.name,
                    url = %redact(&source.url),
                    error = %e,
                    retry_in_ms = wait.as_millis() as u64,
                    "amqp consumer disconnected"
                );
                status.set_error(Some(e.to_string()));
                connected
            }
        };
        if connected {
            status.count(Count::Reconnect);
            wait = first;
        }
        if stopped(&mut stop, wait).await {
            return;
        }
        wait = (wait * 2).min(longest);
    }
}

/// Waits `wait`; true when told to stop meanwhile.
async fn stopped(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        changed = stop.changed() => changed.is_err() || *stop.borrow(),
    }
}

/// Runs `what` within the source's timeout.
async fn within<T>(
    source: &Source,
    what: &'static str,
    future: impl Future<Output = lapin::Result<T>>,
) -> Result<T, SourceError> {
    match tokio::time::timeout(source.timeout, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(SourceError::Broker { what, source: e }),
        Err(_) => Err(SourceError::Timeout(what)),
    }
}

/// One connection's life. `Ok` when told to stop; otherwise the error, and whether it had
/// been consuming.
async fn session(
    source: &Source,
    handler: &dyn Handler,
    status: &SourceStatus,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), (bool, SourceError)> {
    let properties =
        ConnectionProperties::default().with_connection_name(source.name.as_str().into());
    let connection = within(
        source,
        "connect",
        Connection::connect(&source.url, properties),
    )
    .await
    .map_err(|e| (false, e))?;
    let result = consume_on(source, &connection, handler, status, stop).await;
    // Closing tells the broker at once; whatever is unacknowledged returns to the queue.
    let _ = tokio::time::timeout(source.timeout, connection.close(200, "bye".into())).await;
    result
}

async fn consume_on(
    source: &Source,
    connection: &Connection,
    handler: &dyn Handler,
    status: &SourceStatus,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), (bool, SourceError)> {
    let channel = within(source, "open a channel", connection.create_channel())
        .await
        .map_err(|e| (false, e))?;
    let queue = declare(source, &channel).await.map_err(|e| (false, e))?;
    let mut deliveries = within(
        source,
        "consume",
        channel.basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .map_err(|e| (false, e))?;
    status.set_connected(true);
    status.set_error(None);
    tracing::info!(source = %source.name, %queue, "amqp consumer connected");
    loop {
        let delivery = tokio::select! {
            next = deliveries.next() => next,
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return Ok(());
                }
                continue;
            }
        };
        let delivery = match delivery {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => {
                return Err((
                    true,
                    SourceError::Broker {
                        what: "receive",
                        source: e,
                    },
                ))
            }
            None => return Err((true, SourceError::Ended)),
        };
        status.count(Count::Received);
        let message = Message {
            routing_key: delivery.routing_key.as_str(),
            body: &delivery.data,
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str()),
            channel: &channel,
        };
        let mut wait = source.backoff.0;
        let verdict = loop {
            match handler.handle(message).await {
                Verdict::Retry => {}
                done => break done,
            }
            status.count(Count::Retried);
            if stopped(stop, wait).await {
                return Ok(());
            }
            if !message.still_held() || !connection.status().connected() {
                // It returns to the queue with the connection.
                return Err((true, SourceError::Ended));
            }
            wait = (wait * 2).min(source.backoff.1);
        };
        match verdict {
            Verdict::Reject(reason) => {
                tracing::warn!(
                    source = %source.name,
                    routing_key = %delivery.routing_key,
                    %reason,
                    "amqp message rejected to the dead-letter queue"
                );
                within(
                    source,
                    "reject",
                    delivery.reject(BasicRejectOptions { requeue: false }),
                )
                .await
                .map_err(|e| (true, e))?;
                status.count(Count::Rejected);
            }
            _ => {
                within(source, "ack", delivery.ack(BasicAckOptions::default()))
                    .await
                    .map_err(|e| (true, e))?;
                status.count(Count::Acked);
            }
        }
    }
}

/// Declares the dead-letter exchange and queue, the exchange, the queue and its bindings, and
/// the prefetch; answers the queue's name.
async fn declare(source: &Source, channel: &Channel) -> Result<String, SourceError> {
    let mut arguments = FieldTable::default();
    if let Some(dead) = &source.dead_letter {
        within(
            source,
            "declare the dead-letter exchange",
            channel.exchange_declare(
                dead.as_str().into(),
                lapin::ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            ),
        )
        .await?;
        within(
            source,
            "declare the dead-letter queue",
            channel.queue_declare(
                dead.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            ),
        )
        .await?;
        within(
            source,
            "bind the dead-letter queue",
            channel.queue_bind(
                dead.as_str().into(),
                dead.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(LongString::from(dead.as_str())),
        );
    }
    within(
        source,
        "declare the exchange",
        channel.exchange_declare(
            source.exchange.as_str().into(),
            source.exchange_kind.lapin(),
            ExchangeDeclareOptions {
                durable: source.exchange_durable,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await?;
    let own = source.queue.is_none();
    let queue = within(
        source,
        "declare the queue",
        channel.queue_declare(
            source.queue.as_deref().unwrap_or_default().into(),
            QueueDeclareOptions {
                durable: source.queue_durable && !own,
                exclusive: own,
                auto_delete: own,
                ..QueueDeclareOptions::default()
            },
            arguments,
        ),
    )
    .await?;
    let name = queue.name().as_str().to_owned();
    let all = ["#".to_owned()];
    let keys = if source.bindings.is_empty() {
        &all[..]
    } else {
        &source.bindings[..]
    };
    for key in keys {
        within(
            source,
            "bind the queue",
            channel.queue_bind(
                name.as_str().into(),
                source.exchange.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
    }
    within(
        source,
        "set the prefetch",
        channel.basic_qos(source.prefetch, BasicQosOptions::default()),
    )
    .await?;
    Ok(name)
}
