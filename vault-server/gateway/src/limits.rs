//! Bounds on the work one request may cause: a time limit on every query
//! (SQL and listings), a number of queries one grant may run at once, a
//! number the whole server runs at once, and the per-query resources of
//! [`QueryLimits`]. One app, however hostile, cannot starve the others.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_core::GrantId;
use coffer_query::QueryLimits;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};

use crate::error::GatewayError;

/// Limits of the gateway's queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimits {
    /// Longest time one query may take, from admission to its last row.
    pub query_timeout: Duration,
    /// Queries one grant (all tokens of one app on one vault) may run at
    /// once; more are refused with "too many requests".
    pub queries_per_grant: usize,
    /// Queries the server runs at once; more wait (within their time limit).
    pub queries_total: usize,
    /// Memory and function bounds of each query.
    pub query: QueryLimits,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            query_timeout: Duration::from_secs(5),
            queries_per_grant: 4,
            queries_total: 32,
            query: QueryLimits::default(),
        }
    }
}

/// Admits queries within [`RequestLimits`].
pub(crate) struct Limiter {
    limits: RequestLimits,
    total: Arc<Semaphore>,
    per_grant: Mutex<HashMap<GrantId, Arc<Semaphore>>>,
}

/// Grants whose semaphores are kept before idle ones are dropped.
const KEPT_GRANTS: usize = 10_000;

impl Limiter {
    pub(crate) fn new(limits: RequestLimits) -> Self {
        Limiter {
            limits,
            total: Arc::new(Semaphore::new(limits.queries_total.max(1))),
            per_grant: Mutex::default(),
        }
    }

    pub(crate) fn limits(&self) -> &RequestLimits {
        &self.limits
    }

    /// Runs `query` for `grant` within the limits: refused at once when the
    /// grant already runs its maximum, waits for a server-wide slot, and is
    /// cancelled (dropped) when the time limit passes.
    pub(crate) async fn run<T>(
        &self,
        grant: GrantId,
        query: impl Future<Output = Result<T, GatewayError>>,
    ) -> Result<T, GatewayError> {
        let deadline = Instant::now() + self.limits.query_timeout;
        let grant_slots = {
            let mut map = self.per_grant.lock().expect("per-grant limits");
            if map.len() >= KEPT_GRANTS {
                map.retain(|_, s| Arc::strong_count(s) > 1);
            }
            map.entry(grant)
                .or_insert_with(|| Arc::new(Semaphore::new(self.limits.queries_per_grant.max(1))))
                .clone()
        };
        let _grant_permit = grant_slots
            .try_acquire_owned()
            .map_err(|_| GatewayError::TooManyRequests {
                limit: self.limits.queries_per_grant,
            })?;
        let timed_out = || GatewayError::QueryTimeout {
            seconds: self.limits.query_timeout.as_secs_f64(),
        };
        let _server_permit = timeout_at(deadline, self.total.clone().acquire_owned())
            .await
            .map_err(|_| timed_out())?
            .map_err(GatewayError::internal)?;
        timeout_at(deadline, query).await.map_err(|_| timed_out())?
    }
}
