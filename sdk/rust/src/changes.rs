//! The live change stream (`GET /v1/changes/stream`, Server-Sent Events) as
//! a [`futures::Stream`] of [`ChangeEvent`]s that reconnects and resumes
//! from its last event id.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::{Client, read_problem, with_query};
use crate::error::{Error, Problem, Result};

/// How long the stream may stay silent before the connection is taken for
/// dead and opened again: three of the server's 15-second heartbeats.
const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Failed connection attempts in a row before the stream gives up.
const MAX_FAILURES: u32 = 10;
/// The first wait before connecting again after a failure; it doubles
/// with each further failure, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a change did to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// The row appeared (created, or first seen in the load).
    Insert,
    /// The row changed.
    Update,
    /// The row is gone.
    Delete,
}

/// One change, as the feed and the stream send it.
#[derive(Debug, Clone, Deserialize)]
pub struct Change {
    /// What happened.
    pub op: Op,
    /// `schema.table`.
    pub table: String,
    /// The row's id.
    pub id: String,
    /// The change's sequence number (the row's `_seq` after it).
    pub seq: i64,
    /// The whole row as the token may read it (`None` for a delete).
    pub row: Option<Value>,
}

impl Change {
    /// The row read as `R` (a generated row type of [`table`](Self::table)),
    /// `None` for a delete.
    pub fn row_as<R: DeserializeOwned>(&self) -> Result<Option<R>> {
        Ok(self.row.clone().map(serde_json::from_value).transpose()?)
    }
}

/// What a [`PurgeEntry`] removes from the local copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PurgeKind {
    /// Every row of the table.
    Table,
    /// These columns of every row.
    Columns,
    /// The rows other apps created (only the app's own remain).
    Rows,
}

/// One thing the app may no longer keep, after its grant narrowed.
#[derive(Debug, Clone, Deserialize)]
pub struct PurgeEntry {
    /// `schema.table`.
    pub table: String,
    /// What to remove.
    pub drop: PurgeKind,
    /// The columns to remove (for [`PurgeKind::Columns`]).
    #[serde(default)]
    pub columns: Vec<String>,
}

/// Why the server ended a stream (the data of its last event).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Notice {
    /// A short code (`revoked`, `grant_changed`, `expired`, `resync-required`, …).
    #[serde(default)]
    pub reason: String,
    /// What happened, in plain words.
    #[serde(default)]
    pub detail: String,
}

/// An event of the change stream.
#[derive(Debug, Clone)]
pub enum ChangeEvent {
    /// A change to apply to the local copy.
    Change {
        /// The change.
        change: Change,
        /// The position just after it: store it with the local copy.
        cursor: String,
    },
    /// What to remove from the local copy before the changes that follow
    /// (the grant narrowed).
    Purge(Vec<PurgeEntry>),
    /// Every change so far was sent: a good moment to render.
    UpToDate {
        /// Where the stream stands.
        cursor: Option<String>,
    },
    /// The grant changed: the stream refreshes the token (when it holds a
    /// refresh token) and reconnects from its last id, where a
    /// [`Purge`](ChangeEvent::Purge) may come first. Without a refresh
    /// token the stream ends after this event.
    GrantChanged(Notice),
    /// The user revoked the app's access. The stream ends.
    GrantRevoked(Notice),
    /// The access token expired and the stream holds no refresh token. The
    /// stream ends; resume with new tokens from [`ChangeStream::cursor`].
    TokenExpired(Notice),
    /// The access token was refreshed (after `token-expired` or
    /// `grant-changed`); store the client's new [tokens](Client::tokens).
    TokenRefreshed,
    /// The cursor is older than what the vault keeps: drop the local copy
    /// and load again without a cursor. The stream ends.
    ResyncRequired(Notice),
}

/// A change stream to open: which tables, from where.
#[derive(Clone)]
pub struct ChangesRequest {
    client: Client,
    tables: Vec<String>,
    since: Option<String>,
    idle_timeout: Duration,
    max_failures: u32,
}

impl fmt::Debug for ChangesRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangesRequest")
            .field("tables", &self.tables)
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

impl ChangesRequest {
    pub(crate) fn new(client: Client) -> Self {
        ChangesRequest {
            client,
            tables: Vec::new(),
            since: None,
            idle_timeout: IDLE_TIMEOUT,
            max_failures: MAX_FAILURES,
        }
    }

    /// Follows only these tables (default: every table the token may read).
    /// Keep the same tables for one cursor.
    pub fn tables(mut self, tables: &[&str]) -> Self {
        self.tables = tables.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    /// Resumes from a cursor (a feed cursor or an event's id); without it
    /// the stream starts with a load of every row as it is now.
    pub fn since(mut self, cursor: &str) -> Self {
        self.since = Some(cursor.to_owned());
        self
    }

    /// How long the connection may stay silent (no event, no heartbeat)
    /// before it is opened again (default 45 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How many connection attempts may fail in a row before the stream
    /// ends with the last error (default 10).
    pub fn max_failures(mut self, n: u32) -> Self {
        self.max_failures = n;
        self
    }

    /// Opens the stream. It connects on first poll.
    pub fn stream(self) -> ChangeStream {
        let cursor = Arc::new(Mutex::new(self.since.clone()));
        let state = State {
            request: self,
            cursor: cursor.clone(),
            events: None,
            pending: VecDeque::new(),
            failures: 0,
            done: false,
        };
        ChangeStream {
            inner: Box::pin(futures::stream::unfold(state, |mut state| async move {
                let item = state.next().await?;
                Some((item, state))
            })),
            cursor,
        }
    }
}

/// The live change stream: a [`Stream`] of [`ChangeEvent`]s.
///
/// When the connection drops (or stays silent too long, or the server asks
/// to reconnect) it reconnects with the last event id as `Last-Event-ID`,
/// so no change is missed and none comes twice. It ends after
/// [`GrantRevoked`](ChangeEvent::GrantRevoked),
/// [`ResyncRequired`](ChangeEvent::ResyncRequired),
/// [`TokenExpired`](ChangeEvent::TokenExpired), a refusal, or too many
/// failed connection attempts (as an `Err`).
pub struct ChangeStream {
    inner: Pin<Box<dyn Stream<Item = Result<ChangeEvent>> + Send>>,
    cursor: Arc<Mutex<Option<String>>>,
}

impl fmt::Debug for ChangeStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeStream").field("cursor", &self.cursor()).finish()
    }
}

impl ChangeStream {
    /// The last event id received (or the cursor the stream started from):
    /// where a new stream resumes.
    pub fn cursor(&self) -> Option<String> {
        self.cursor.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Stream for ChangeStream {
    type Item = Result<ChangeEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Parsed SSE events of one connection.
type Events = Pin<
    Box<dyn Stream<Item = std::result::Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>> + Send>,
>;

/// The stream's state between two events.
struct State {
    request: ChangesRequest,
    cursor: Arc<Mutex<Option<String>>>,
    events: Option<Events>,
    pending: VecDeque<Result<ChangeEvent>>,
    failures: u32,
    done: bool,
}

/// What connecting gave.
enum Connected {
    /// The stream is open.
    Open(Events),
    /// Try again (after a backoff).
    Retry(Option<Error>),
    /// The stream cannot go on: these are its last items.
    End(Vec<Result<ChangeEvent>>),
}

impl State {
    fn last_id(&self) -> Option<String> {
        self.cursor.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn set_last_id(&self, id: &str) {
        if !id.is_empty()
            && let Ok(mut cursor) = self.cursor.lock()
        {
            *cursor = Some(id.to_owned());
        }
    }

    /// The next item, or `None` when the stream has ended.
    async fn next(&mut self) -> Option<Result<ChangeEvent>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            let Some(events) = self.events.as_mut() else {
                if self.failures > 0 {
                    let backoff = FIRST_BACKOFF
                        .saturating_mul(1 << (self.failures - 1).min(16))
                        .min(MAX_BACKOFF);
                    tokio::time::sleep(backoff).await;
                }
                match self.connect().await {
                    Connected::Open(events) => self.events = Some(events),
                    Connected::Retry(error) => {
                        self.failures += 1;
                        if self.failures >= self.request.max_failures {
                            self.done = true;
                            let error = error.unwrap_or_else(|| {
                                Error::UnexpectedResponse("the change stream could not be opened".into())
                            });
                            return Some(Err(error));
                        }
                    }
                    Connected::End(items) => {
                        self.pending.extend(items);
                        self.done = true;
                    }
                }
                continue;
            };
            let event = match tokio::time::timeout(self.request.idle_timeout, events.next()).await {
                Ok(Some(Ok(event))) => event,
                // Silent too long, ended, or broken: connect again from the
                // last id.
                Err(_) | Ok(None) | Ok(Some(Err(_))) => {
                    self.events = None;
                    self.failures += 1;
                    continue;
                }
            };
            self.failures = 0;
            if let Some(item) = self.handle(event).await {
                return Some(item);
            }
        }
    }

    /// Acts on one SSE event; the item to hand out, if any.
    async fn handle(&mut self, event: eventsource_stream::Event) -> Option<Result<ChangeEvent>> {
        let notice = || serde_json::from_str::<Notice>(&event.data).unwrap_or_default();
        match event.event.as_str() {
            "change" => match serde_json::from_str::<Change>(&event.data) {
                Ok(change) => {
                    self.set_last_id(&event.id);
                    Some(Ok(ChangeEvent::Change {
                        change,
                        cursor: event.id,
                    }))
                }
                Err(e) => {
                    self.done = true;
                    self.events = None;
                    Some(Err(Error::UnexpectedResponse(format!("a change event: {e}"))))
                }
            },
            "purge" => {
                #[derive(Deserialize)]
                struct Purge {
                    purge: Vec<PurgeEntry>,
                }
                match serde_json::from_str::<Purge>(&event.data) {
                    Ok(p) => Some(Ok(ChangeEvent::Purge(p.purge))),
                    Err(e) => {
                        self.done = true;
                        self.events = None;
                        Some(Err(Error::UnexpectedResponse(format!("a purge event: {e}"))))
                    }
                }
            }
            "up-to-date" => {
                self.set_last_id(&event.id);
                Some(Ok(ChangeEvent::UpToDate { cursor: self.last_id() }))
            }
            "grant-revoked" | "resync-required" => {
                self.set_last_id(&event.id);
                self.events = None;
                self.done = true;
                Some(Ok(if event.event == "grant-revoked" {
                    ChangeEvent::GrantRevoked(notice())
                } else {
                    ChangeEvent::ResyncRequired(notice())
                }))
            }
            "grant-changed" | "token-expired" => {
                self.set_last_id(&event.id);
                self.events = None;
                let notice = notice();
                let stale = self.request.client.access_token().await;
                let renewed = self.request.client.refresh_if_stale(&stale).await;
                let grant_changed = event.event == "grant-changed";
                match renewed {
                    Ok(true) => {
                        self.pending.push_back(Ok(ChangeEvent::TokenRefreshed));
                        grant_changed.then_some(Ok(ChangeEvent::GrantChanged(notice)))
                    }
                    Ok(false) => {
                        self.done = true;
                        Some(Ok(if grant_changed {
                            ChangeEvent::GrantChanged(notice)
                        } else {
                            ChangeEvent::TokenExpired(notice)
                        }))
                    }
                    Err(e) => {
                        self.done = true;
                        if grant_changed {
                            self.pending.push_back(Err(e));
                            Some(Ok(ChangeEvent::GrantChanged(notice)))
                        } else {
                            Some(Err(e))
                        }
                    }
                }
            }
            "reconnect" => {
                self.set_last_id(&event.id);
                self.events = None;
                None
            }
            "server-error" => {
                self.set_last_id(&event.id);
                self.events = None;
                self.failures += 1;
                None
            }
            // An event this version does not know: skipped.
            _ => None,
        }
    }

    /// Opens one connection from the last id.
    async fn connect(&mut self) -> Connected {
        let client = &self.request.client;
        let mut query = Vec::new();
        if !self.request.tables.is_empty() {
            query.push(("tables".to_owned(), self.request.tables.join(",")));
        }
        let path = with_query("/v1/changes/stream", &query);
        let tokens = client.tokens().await;
        let token = tokens.access_token.clone();
        let url = format!("{}{path}", client.inner.base);
        let mut request = client
            .inner
            .http
            .get(&url)
            // No overall timeout: the stream stays open; silence is
            // watched with the idle timeout instead.
            .timeout(Duration::from_secs(60 * 60 * 24 * 365))
            .header(reqwest::header::ACCEPT, "text/event-stream");
        for (name, value) in client.credentials(&reqwest::Method::GET, &url, &tokens) {
            request = request.header(name, value);
        }
        if let Some(last) = self.last_id() {
            request = request.header("Last-Event-ID", last);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Connected::Retry(Some(Error::Http(e))),
        };
        let status = response.status();
        if status.is_success() {
            let bytes = futures::stream::unfold(response, |mut response| async move {
                match response.chunk().await {
                    Ok(Some(chunk)) => Some((Ok(chunk), response)),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), response)),
                }
            });
            return Connected::Open(Box::pin(bytes.eventsource()));
        }
        let problem = read_problem(response).await;
        let renewable = matches!(problem.reason.as_deref(), Some("expired" | "grant_changed"));
        match status {
            StatusCode::UNAUTHORIZED if renewable && self.failures == 0 => {
                match client.refresh_if_stale(&token).await {
                    Ok(true) => Connected::Retry(None),
                    Ok(false) => Connected::End(vec![Err(Error::Problem(Box::new(problem)))]),
                    Err(e) => Connected::End(vec![Err(e)]),
                }
            }
            StatusCode::GONE => Connected::End(vec![Ok(ChangeEvent::ResyncRequired(notice_of(&problem)))]),
            StatusCode::TOO_MANY_REQUESTS => {
                if let Some(seconds) = problem.retry_after {
                    tokio::time::sleep(Duration::from_secs(seconds.min(60))).await;
                }
                Connected::Retry(Some(Error::Problem(Box::new(problem))))
            }
            s if s.is_server_error() => Connected::Retry(Some(Error::Problem(Box::new(problem)))),
            _ => Connected::End(vec![Err(Error::Problem(Box::new(problem)))]),
        }
    }
}

/// A refusal's problem as a [`Notice`].
fn notice_of(problem: &Problem) -> Notice {
    Notice {
        reason: problem.kind().unwrap_or_default().to_owned(),
        detail: problem.detail.clone(),
    }
}
