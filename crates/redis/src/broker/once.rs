//! Idempotency keys in cluster mode: a key's claim, then its result, in one Redis string
//! that expires with the window.

use std::time::Duration;

use fred::interfaces::KeysInterface;
use fred::types::{Expiration, SetOptions};
use roomcast_broker::{BrokerError, Claim};

use super::{unavailable, RedisBroker};

/// The value of a claimed idempotency key until its publish settles it (results are JSON).
const ONCE_PENDING: &str = "pending";

impl RedisBroker {
    /// [`Broker::claim`](roomcast_broker::Broker::claim) of the idempotency key stored at `key`.
    pub(super) async fn claim_once(
        &self,
        key: &str,
        window: Duration,
    ) -> Result<Claim, BrokerError> {
        let ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let work = async {
            let set: Option<String> = self
                .client
                .set(
                    key,
                    ONCE_PENDING,
                    Some(Expiration::PX(ms)),
                    Some(SetOptions::NX),
                    false,
                )
                .await?;
            if set.is_some() {
                return Ok(Claim::First);
            }
            let held: Option<String> = self.client.get(key).await?;
            Ok::<_, fred::error::Error>(match held {
                Some(result) if result != ONCE_PENDING => Claim::Done(result),
                Some(_) => Claim::Pending,
                // Its window ended in between: nobody holds it any more.
                None => Claim::Pending,
            })
        };
        tokio::time::timeout(self.opts.timeout, work)
            .await
            .map_err(|_| unavailable("idempotency claim timed out"))?
            .map_err(unavailable)
    }

    /// [`Broker::settle`](roomcast_broker::Broker::settle): `result`, for the rest of `window`.
    pub(super) async fn settle_once(
        &self,
        key: &str,
        result: &str,
        window: Duration,
    ) -> Result<(), BrokerError> {
        let ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let work = self.client.set::<Option<String>, _, _>(
            key,
            result,
            Some(Expiration::PX(ms)),
            Some(SetOptions::XX),
            false,
        );
        tokio::time::timeout(self.opts.timeout, work)
            .await
            .map_err(|_| unavailable("idempotency settle timed out"))?
            .map(drop)
            .map_err(unavailable)
    }

    /// [`Broker::release`](roomcast_broker::Broker::release).
    pub(super) async fn release_once(&self, key: &str) -> Result<(), BrokerError> {
        let work = self.client.del::<i64, _>(key);
        tokio::time::timeout(self.opts.timeout, work)
            .await
            .map_err(|_| unavailable("idempotency release timed out"))?
            .map(drop)
            .map_err(unavailable)
    }
}
