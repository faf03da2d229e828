//! The state of one connection and what all connections share: the
//! gateway, the limits, and how many sessions each app holds on each vault.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use coffer_core::{AppId, VaultId};
use coffer_gateway::{Credentials, Gateway};
use pgwire::api::auth::AuthDriver;
use pgwire::api::{ConnectionManager, RandomPidSecretKeyGenerator};
use tokio::time::Instant;

use crate::auth::{Parameters, Verified};
use crate::server::PgwireLimits;

/// What every connection of one listener shares.
pub(crate) struct Shared {
    pub gateway: Gateway,
    pub limits: PgwireLimits,
    /// Whether a client must negotiate TLS before it sends its token.
    pub tls_required: bool,
    pub driver: AuthDriver<Parameters, Verified>,
    pub cancels: Arc<ConnectionManager>,
    sessions: Mutex<HashMap<(VaultId, AppId), usize>>,
}

impl Shared {
    pub fn new(gateway: Gateway, limits: PgwireLimits, tls_required: bool) -> Arc<Shared> {
        let cancels = Arc::new(ConnectionManager::new());
        Arc::new(Shared {
            gateway,
            limits,
            tls_required,
            driver: AuthDriver::new(Parameters::default())
                .with_pid_secret_key_generator(Arc::new(RandomPidSecretKeyGenerator::default()))
                .with_connection_manager(cancels.clone()),
            cancels,
            sessions: Mutex::default(),
        })
    }

    /// Takes one of the sessions `app` may hold on `vault`, or `None` when
    /// it holds [`PgwireLimits::sessions_per_app`] already.
    pub fn take_slot(self: &Arc<Self>, vault: VaultId, app: AppId) -> Option<Slot> {
        let mut sessions = self.sessions.lock().expect("sessions");
        let held = sessions.entry((vault, app.clone())).or_default();
        if *held >= self.limits.sessions_per_app {
            return None;
        }
        *held += 1;
        Some(Slot {
            shared: self.clone(),
            key: (vault, app),
        })
    }
}

/// One session an app holds; given back when dropped.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    key: (VaultId, AppId),
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut sessions = self.shared.sessions.lock().expect("sessions");
        if let Some(held) = sessions.get_mut(&self.key) {
            *held -= 1;
            if *held == 0 {
                sessions.remove(&self.key);
            }
        }
    }
}

/// An authenticated session: the token every statement is run with.
pub(crate) struct Session {
    pub credentials: Credentials,
    pub application_name: Mutex<String>,
    _slot: Slot,
}

/// One client connection.
pub(crate) struct Connection {
    pub shared: Arc<Shared>,
    session: OnceLock<Session>,
    last_active: Mutex<Instant>,
    /// Whether a statement wrote inside the open transaction block.
    wrote_in_block: AtomicBool,
    /// The `COPY … FROM STDIN` waiting for its data.
    pub copy_in: Mutex<Option<crate::copy_in::Pending>>,
}

impl Connection {
    pub fn new(shared: Arc<Shared>) -> Arc<Connection> {
        Arc::new(Connection {
            shared,
            session: OnceLock::new(),
            last_active: Mutex::new(Instant::now()),
            wrote_in_block: AtomicBool::new(false),
            copy_in: Mutex::new(None),
        })
    }

    pub fn gateway(&self) -> &Gateway {
        &self.shared.gateway
    }

    pub fn session(&self) -> Option<&Session> {
        self.session.get()
    }

    pub fn start_session(&self, credentials: Credentials, application_name: String, slot: Slot) {
        let _ = self.session.set(Session {
            credentials,
            application_name: Mutex::new(application_name),
            _slot: slot,
        });
        self.touch();
    }

    /// Notes that the client did something now.
    pub fn touch(&self) {
        *self.last_active.lock().expect("last active") = Instant::now();
    }

    /// When the connection is closed if the client does nothing until
    /// then.
    pub fn idle_deadline(&self) -> Instant {
        *self.last_active.lock().expect("last active") + self.shared.limits.idle_timeout
    }

    pub fn set_wrote(&self, wrote: bool) {
        self.wrote_in_block.store(wrote, Ordering::Relaxed);
    }

    pub fn wrote(&self) -> bool {
        self.wrote_in_block.load(Ordering::Relaxed)
    }
}
