//! Sessions past their handshake that the application has not admitted yet (Socket.IO: not
//! connected to any namespace, so no credential seen). They cost memory before the client
//! has shown anything, so they are bounded, in all and per client address; a handshake past
//! either bound is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::lock;
use crate::engineio::Error;

/// A client's address, for the bound per address: put one in a request's extensions before
/// handing the request to [`EngineIo::handle`](super::EngineIo::handle). Without one, only
/// the overall bound applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

/// The count of pending sessions, overall and per address.
#[derive(Debug)]
pub(super) struct Pending {
    max: usize,
    max_per_ip: usize,
    // A std lock: one count updated per handshake, admission or close, never across an
    // `.await`.
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One pending session's place in the count, given back when dropped. One word, since the
/// connection task carries it until the session starts, and each session keeps it until
/// it is admitted: memory per connection is a budget.
#[derive(Debug)]
pub(super) struct PendingSlot(Box<Place>);

#[derive(Debug)]
struct Place {
    pending: Arc<Pending>,
    ip: Option<IpAddr>,
}

impl Pending {
    /// Bounds of `max` sessions overall and `max_per_ip` per address; `0` is no bound.
    pub(super) fn new(max: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_ip,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// A place for a new session from `ip`, or the error that refuses its handshake.
    pub(super) fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<PendingSlot, Error> {
        let mut counts = lock(&self.counts);
        if self.max > 0 && counts.total >= self.max {
            return Err(Error::TooManySessions);
        }
        if let Some(ip) = ip {
            let of_ip = counts.per_ip.entry(ip).or_default();
            if self.max_per_ip > 0 && *of_ip >= self.max_per_ip {
                return Err(Error::TooManySessionsFromAddress);
            }
            *of_ip += 1;
        }
        counts.total += 1;
        Ok(PendingSlot(Box::new(Place {
            pending: self.clone(),
            ip,
        })))
    }

    /// Sessions pending now.
    pub(super) fn count(&self) -> usize {
        lock(&self.counts).total
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.0.pending.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(ip) = self.0.ip {
            if let Some(n) = counts.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    counts.per_ip.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn bounded_per_address_and_overall() {
        let pending = Pending::new(3, 2);
        let a1 = pending.admit(ip(1)).unwrap();
        let _a2 = pending.admit(ip(1)).unwrap();
        assert_eq!(
            pending.admit(ip(1)).unwrap_err(),
            Error::TooManySessionsFromAddress
        );
        let _b1 = pending.admit(ip(2)).unwrap();
        assert_eq!(pending.admit(ip(3)).unwrap_err(), Error::TooManySessions);
        assert_eq!(pending.admit(None).unwrap_err(), Error::TooManySessions);
        drop(a1);
        assert_eq!(pending.count(), 2);
        let _a3 = pending.admit(ip(1)).unwrap();
        assert_eq!(pending.count(), 3);
    }

    #[test]
    fn zero_is_no_bound_and_addresses_are_forgotten() {
        let pending = Pending::new(0, 0);
        let slots: Vec<PendingSlot> = (0..100).map(|_| pending.admit(ip(1)).unwrap()).collect();
        assert_eq!(pending.count(), 100);
        drop(slots);
        assert_eq!(pending.count(), 0);
        assert!(lock(&pending.counts).per_ip.is_empty());
    }
}
