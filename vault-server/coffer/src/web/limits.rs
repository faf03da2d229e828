//! In-memory limits and short-lived state of one server process: a sliding
//! window rate limiter, the authorization requests waiting for the consent
//! page's answer, and the device codes each browser session looked up.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_core::UserId;
use coffer_oauth::PendingAuthorization;

/// At most `max` events per key within `window`.
#[derive(Debug)]
pub struct Limiter {
    max: usize,
    window: Duration,
    events: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limiter {
    /// A limiter of `max` events per `window`.
    pub fn new(max: usize, window: Duration) -> Self {
        Limiter {
            max: max.max(1),
            window,
            events: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an event for `key` would be allowed now, without counting
    /// one: `Err` with the time until one is.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let Some(queue) = events.get(key) else {
            return Ok(());
        };
        let live: Vec<&Instant> = queue.iter().filter(|t| now.duration_since(**t) < self.window).collect();
        match live.first() {
            Some(oldest) if live.len() >= self.max => Err(self.window.saturating_sub(now.duration_since(**oldest))),
            _ => Ok(()),
        }
    }

    /// Counts an event for `key`, or refuses it with the time until one is
    /// allowed again (a refused event is not counted).
    pub fn hit(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if events.len() > 100_000 {
            let window = self.window;
            events.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let queue = events.entry(key.to_owned()).or_default();
        while queue.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            queue.pop_front();
        }
        if queue.len() >= self.max {
            let oldest = queue.front().copied().unwrap_or(now);
            return Err(self.window.saturating_sub(now.duration_since(oldest)));
        }
        queue.push_back(now);
        Ok(())
    }
}

/// Requests one user may have waiting at once (open consent pages).
const MAX_PENDING_PER_USER: usize = 20;

struct Pending {
    user: UserId,
    request: PendingAuthorization,
    expires: Instant,
}

/// Validated authorization requests between the consent page and its
/// answer, under random single-use ids bound to the user who saw the page.
/// Kept in this process's memory: a restart forgets them (the user starts
/// again from the app), and several servers behind one load balancer need
/// sticky sessions for the consent step.
pub struct PendingStore {
    lifetime: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, Pending>>,
}

impl PendingStore {
    /// A store keeping requests for `lifetime`, at most `capacity` at once.
    pub fn new(lifetime: Duration, capacity: usize) -> Self {
        PendingStore {
            lifetime,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps `request` for `user`; returns its id, or `None` when full.
    pub fn put(&self, user: UserId, request: PendingAuthorization) -> Option<String> {
        let id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, p| p.expires > now);
            if entries.len() >= self.capacity {
                return None;
            }
        }
        // One user cannot crowd out everyone else: past their share, their
        // oldest request goes.
        let mine: Vec<(&String, Instant)> = entries
            .iter()
            .filter(|(_, p)| p.user == user)
            .map(|(id, p)| (id, p.expires))
            .collect();
        if mine.len() >= MAX_PENDING_PER_USER
            && let Some(oldest) = mine
                .iter()
                .min_by_key(|(_, expires)| *expires)
                .map(|(id, _)| (*id).clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(
            id.clone(),
            Pending {
                user,
                request,
                expires: now + self.lifetime,
            },
        );
        Some(id)
    }

    /// Takes the request `id` of `user` (once, before it expires).
    pub fn take(&self, id: &str, user: UserId) -> Option<PendingAuthorization> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(id) {
            Some(p) if p.user == user && p.expires > Instant::now() => entries.remove(id).map(|p| p.request),
            Some(p) if p.expires <= Instant::now() => {
                entries.remove(id);
                None
            }
            _ => None,
        }
    }
}

/// Device codes one session may have looked up and not answered yet.
const MAX_DEVICE_CODES_PER_SESSION: usize = 5;

struct Binding {
    session: String,
    user_code: String,
    expires: Instant,
}

/// The device codes each browser session looked up on the device page,
/// under random single-use ids. The consent form of the device flow carries
/// such an id, never the user code itself, so `POST /device/decision`
/// answers only a code this session just typed (and had checked against the
/// look-up limits), not any code guessed or learned elsewhere.
pub struct DeviceBindings {
    lifetime: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, Binding>>,
}

impl DeviceBindings {
    /// Bindings kept for `lifetime`, at most `capacity` at once.
    pub fn new(lifetime: Duration, capacity: usize) -> Self {
        DeviceBindings {
            lifetime,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Binds `user_code` to `session` (a key derived from the session
    /// token); returns the id for the consent form, or `None` when full.
    /// Past [`MAX_DEVICE_CODES_PER_SESSION`], the session's oldest goes.
    pub fn bind(&self, session: &str, user_code: &str) -> Option<String> {
        let id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, b| b.expires > now);
        let mine: Vec<(String, Instant)> = entries
            .iter()
            .filter(|(_, b)| b.session == session)
            .map(|(id, b)| (id.clone(), b.expires))
            .collect();
        if mine.len() >= MAX_DEVICE_CODES_PER_SESSION
            && let Some((oldest, _)) = mine.iter().min_by_key(|(_, expires)| *expires)
        {
            entries.remove(oldest);
        }
        if entries.len() >= self.capacity {
            return None;
        }
        entries.insert(
            id.clone(),
            Binding {
                session: session.to_owned(),
                user_code: user_code.to_owned(),
                expires: now + self.lifetime,
            },
        );
        Some(id)
    }

    /// Takes the user code bound under `id` to `session` (once, before it
    /// expires); `None` for an id of another session, unknown or expired.
    pub fn take(&self, id: &str, session: &str) -> Option<String> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(id) {
            Some(b) if b.session == session && b.expires > Instant::now() => entries.remove(id).map(|b| b.user_code),
            Some(b) if b.expires <= Instant::now() => {
                entries.remove(id);
                None
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_codes_are_bound_to_the_session_that_looked_them_up() {
        let bindings = DeviceBindings::new(Duration::from_secs(60), 100);
        let id = bindings.bind("session-a", "BCDF-GHJK").unwrap();
        assert_eq!(bindings.take(&id, "session-b"), None, "another session");
        assert_eq!(
            bindings.take("BCDF-GHJK", "session-a"),
            None,
            "the code itself is no id"
        );
        assert_eq!(bindings.take(&id, "session-a").as_deref(), Some("BCDF-GHJK"));
        assert_eq!(bindings.take(&id, "session-a"), None, "single use");
        let first = bindings.bind("session-a", "A").unwrap();
        for _ in 0..MAX_DEVICE_CODES_PER_SESSION {
            std::thread::sleep(Duration::from_millis(1));
            bindings.bind("session-a", "B").unwrap();
        }
        assert_eq!(bindings.take(&first, "session-a"), None, "the oldest went");
    }

    #[test]
    fn check_does_not_count() {
        let limiter = Limiter::new(1, Duration::from_secs(60));
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_ok());
        assert!(limiter.hit("a").is_ok());
        assert!(limiter.check("a").is_err());
        assert!(limiter.check("b").is_ok());
    }

    #[test]
    fn limiter_refuses_past_max_and_keys_are_separate() {
        let limiter = Limiter::new(2, Duration::from_secs(60));
        assert!(limiter.hit("a").is_ok());
        assert!(limiter.hit("a").is_ok());
        let wait = limiter.hit("a").unwrap_err();
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        assert!(limiter.hit("b").is_ok());
        let short = Limiter::new(1, Duration::from_millis(1));
        assert!(short.hit("a").is_ok());
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.hit("a").is_ok());
    }

    #[test]
    fn pending_requests_are_single_use_and_bound_to_their_user() {
        let store = PendingStore::new(Duration::from_secs(60), 2);
        let request = PendingAuthorization {
            client_id: "c".into(),
            app_name: "App".into(),
            redirect_uri: "https://app.example/cb".into(),
            redirect_uri_given: true,
            state: None,
            requested: Default::default(),
            code_challenge: "x".repeat(43),
            dpop_jkt: None,
        };
        let (ada, bob) = (UserId::generate(), UserId::generate());
        let id = store.put(ada, request.clone()).unwrap();
        assert_eq!(id.len(), 43);
        assert!(store.take(&id, bob).is_none(), "another user's request");
        assert_eq!(store.take(&id, ada), Some(request.clone()));
        assert!(store.take(&id, ada).is_none(), "single use");
        store.put(ada, request.clone()).unwrap();
        store.put(bob, request.clone()).unwrap();
        assert!(store.put(ada, request.clone()).is_none(), "full");

        // Past their share, a user's oldest request is dropped.
        let store = PendingStore::new(Duration::from_secs(60), 1000);
        let first = store.put(ada, request.clone()).unwrap();
        for _ in 0..MAX_PENDING_PER_USER {
            std::thread::sleep(Duration::from_millis(1));
            store.put(ada, request.clone()).unwrap();
        }
        let theirs = store.put(bob, request.clone()).unwrap();
        assert!(store.take(&first, ada).is_none(), "the oldest went");
        assert!(store.take(&theirs, bob).is_some(), "others are not affected");
    }
}
