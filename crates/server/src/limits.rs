//! Connection limits: global, per tenant and per user, checked and counted atomically.
//!
//! A [`Slot`] is held by each authenticated connection and gives its place back when dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// `limits.max_connections`.
    #[error("server connection limit reached")]
    Global,
    /// `limits.max_connections_per_tenant`.
    #[error("tenant connection limit reached")]
    Tenant,
    /// `limits.max_connections_per_user`.
    #[error("user connection limit reached")]
    User,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    tenants: HashMap<String, usize>,
    users: HashMap<(String, String), usize>,
}

/// The counters behind the limits. `0` means unlimited for the per-tenant and per-user caps.
#[derive(Debug)]
pub struct ConnLimits {
    max_total: usize,
    max_tenant: usize,
    max_user: usize,
    // A std mutex: held for a check-and-increment, never across an `.await`.
    counts: Mutex<Counts>,
}

/// A connection's place under the limits.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<ConnLimits>,
    tenant: String,
    user: String,
}

impl ConnLimits {
    /// Limits with the given caps.
    pub fn new(max_total: usize, max_tenant: usize, max_user: usize) -> Self {
        Self {
            max_total,
            max_tenant,
            max_user,
            counts: Mutex::new(Counts::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a connection of `user` in `tenant`, or says which limit refuses it.
    pub fn acquire(self: &Arc<Self>, tenant: &str, user: &str) -> Result<Slot, LimitError> {
        let mut c = self.lock();
        if c.total >= self.max_total {
            return Err(LimitError::Global);
        }
        let t = c.tenants.get(tenant).copied().unwrap_or(0);
        if self.max_tenant > 0 && t >= self.max_tenant {
            return Err(LimitError::Tenant);
        }
        let key = (tenant.to_owned(), user.to_owned());
        let u = c.users.get(&key).copied().unwrap_or(0);
        if self.max_user > 0 && u >= self.max_user {
            return Err(LimitError::User);
        }
        c.total += 1;
        *c.tenants.entry(tenant.to_owned()).or_default() += 1;
        *c.users.entry(key).or_default() += 1;
        Ok(Slot {
            limits: self.clone(),
            tenant: tenant.to_owned(),
            user: user.to_owned(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.limits.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.tenants.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                c.tenants.remove(&self.tenant);
            }
        }
        let key = (
            std::mem::take(&mut self.tenant),
            std::mem::take(&mut self.user),
        );
        if let Some(n) = c.users.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                c.users.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_refuses_and_frees_on_drop() {
        let l = Arc::new(ConnLimits::new(3, 2, 1));
        let a = l.acquire("t", "1").unwrap();
        assert_eq!(l.acquire("t", "1").unwrap_err(), LimitError::User);
        let _b = l.acquire("t", "2").unwrap();
        assert_eq!(l.acquire("t", "3").unwrap_err(), LimitError::Tenant);
        let _c = l.acquire("u", "1").unwrap();
        assert_eq!(l.acquire("v", "1").unwrap_err(), LimitError::Global);
        drop(a);
        assert!(l.acquire("t", "1").is_ok());
    }

    #[test]
    fn zero_means_unlimited_per_tenant_and_user() {
        let l = Arc::new(ConnLimits::new(100, 0, 0));
        let slots: Vec<_> = (0..50).map(|_| l.acquire("t", "1").unwrap()).collect();
        assert_eq!(slots.len(), 50);
    }
}
