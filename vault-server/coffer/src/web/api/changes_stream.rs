//! `GET /v1/changes/stream`: the change feed as Server-Sent Events, or over
//! a WebSocket when the request asks for an upgrade (`docs/guides/sync.md`,
//! decision 0026). Both carry the same events from the same task; on a
//! WebSocket each is a text message `{"event", "id", "data"}` and the
//! heartbeats are pings.
//!
//! A stream is the feed read again each time the vault commits: it replays
//! from the cursor (`Last-Event-ID`, else `since`, else a load), then waits
//! on the engine's commit notification for the vault and reads the feed
//! from where it stands. Nothing of a change travels through the
//! notification, so what a stream sends is exactly what `GET /v1/changes`
//! would answer from the same cursor: the same grant, columns, own rows and
//! `resync-required` rule (`coffer_gateway::changes`). Each change is one
//! `change` event whose `id` is the cursor just after it.
//!
//! One task per stream reads a page ([`changes::STREAM_PAGE`] changes) only
//! when the previous one has been handed to the connection, one event at a
//! time: a slow client holds back its own stream, never the server's
//! memory. On every wake-up and every heartbeat the task checks the token
//! again ([`changes::recheck`]); a revoked or changed grant, an expired
//! token, the end of the stream's lifetime or the server stopping end the
//! stream with an event saying why.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use coffer_core::{AppId, TableName, VaultId};
use coffer_gateway::changes::{self, ChangesQuery, StreamChange, StreamStep};
use coffer_gateway::{Caller, GatewayError, Logged, Operation, Scheme};
use coffer_storage::CommitWatch;
use futures::SinkExt;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, sleep_until, timeout};

use super::openapi::Problem;
use super::problem::problem;
use super::{ApiCredentials, query_pairs};
use crate::web::AppState;

/// Streams one app may hold open on one vault at once (one grant: all the
/// app's tokens for the vault share it). A client needs one stream; a few
/// cover several tabs or a reconnect that overlaps the old stream's end.
/// More are refused with `429 too-many-requests`.
pub const STREAMS_PER_GRANT: usize = 4;
/// Streams the server holds open at once, over every vault; more are
/// refused with `429 too-many-requests`.
pub const STREAMS_TOTAL: usize = 10_000;
/// How often an idle stream sends a heartbeat comment (and checks its
/// token again) unless `COFFER_STREAM_HEARTBEAT_SECS` says otherwise.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// How long a stream lives at most unless
/// `COFFER_STREAM_MAX_LIFETIME_SECS` says otherwise; it then ends with a
/// `reconnect` event.
pub const MAX_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// How long an event may wait for the client to take it; a client that
/// takes nothing for this long is dropped (it resumes from its last id).
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stream waits before reading again when the gateway had no
/// query slot for it (the app's or the server's queries at once).
const BUSY_RETRY: Duration = Duration::from_millis(200);

/// The heartbeat and lifetime of streams, read once from the environment.
struct Timing {
    heartbeat: Duration,
    max_lifetime: Duration,
}

static TIMING: LazyLock<Timing> = LazyLock::new(|| Timing {
    heartbeat: seconds_from_env("COFFER_STREAM_HEARTBEAT_SECS").unwrap_or(HEARTBEAT),
    max_lifetime: seconds_from_env("COFFER_STREAM_MAX_LIFETIME_SECS").unwrap_or(MAX_LIFETIME),
});

/// A positive number of seconds (fractions allowed, at least 50 ms) from
/// the environment variable `name`.
fn seconds_from_env(name: &str) -> Option<Duration> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.05 => Some(Duration::from_secs_f64(secs)),
        _ => {
            tracing::warn!("{name}={value:?} is not a number of seconds of at least 0.05; using the default");
            None
        }
    }
}

/// The streams open now, per grant (vault and app) and in all.
#[derive(Default)]
struct OpenStreams {
    per_grant: Mutex<HashMap<(VaultId, AppId), usize>>,
    total: AtomicUsize,
}

static OPEN: LazyLock<OpenStreams> = LazyLock::new(OpenStreams::default);

/// Bumped by [`close_streams`]: every stream open then ends; streams opened
/// afterwards are not affected.
static CLOSING: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);

/// Ends every change stream open now with a `reconnect` event. The server
/// calls it when it stops, since its graceful shutdown waits for every
/// response to end.
pub fn close_streams() {
    CLOSING.send_modify(|generation| *generation += 1);
}

/// Which limit refused a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refused {
    Grant,
    Server,
}

/// One open stream, counted until dropped.
struct StreamPermit {
    key: (VaultId, AppId),
}

impl StreamPermit {
    fn acquire(vault: VaultId, app: &AppId) -> Result<Self, Refused> {
        let key = (vault, app.clone());
        let mut per_grant = OPEN.per_grant.lock().expect("open streams");
        if OPEN.total.load(Ordering::Relaxed) >= STREAMS_TOTAL {
            return Err(Refused::Server);
        }
        let count = per_grant.entry(key.clone()).or_insert(0);
        if *count >= STREAMS_PER_GRANT {
            return Err(Refused::Grant);
        }
        *count += 1;
        OPEN.total.fetch_add(1, Ordering::Relaxed);
        Ok(StreamPermit { key })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut per_grant = OPEN.per_grant.lock().expect("open streams");
        if let Some(count) = per_grant.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                per_grant.remove(&self.key);
            }
        }
        OPEN.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What opening a stream yields: the first read, and what the stream's task
/// needs to go on.
struct Opened {
    caller: Caller,
    query: ChangesQuery,
    first: StreamStep,
    watch: CommitWatch,
    permit: StreamPermit,
}

impl Logged for Opened {
    fn rows(&self) -> u64 {
        self.first.rows()
    }

    fn learned(&self) -> Option<(Operation, &[TableName])> {
        self.first.learned()
    }
}

/// The changes after the cursor to the tables the token may read, then each
/// change as it commits, as Server-Sent Events.
#[utoipa::path(
    get, path = "/v1/changes/stream", tag = "changes", operation_id = "stream_changes",
    params(
        ("since" = Option<String>, Query, description = "A cursor of the feed or the `id` of a stream event; without it (and without `Last-Event-ID`) the stream starts with a load of every row as it is now"),
        ("tables" = Option<String>, Query, description = "`schema.table`s, comma-separated (default: every table the token may read); keep the same for one cursor"),
        ("filter[schema.table]" = Option<String>, Query, description = "A subset of one table: `column=op.value` in the rows API's grammar (repeat for more; all must hold); keep the same for one cursor"),
        ("select[schema.table]" = Option<String>, Query, description = "The columns sent of one table, comma-separated (`id` always); keep the same for one cursor"),
        ("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event received; wins over `since` (an `EventSource` sends it when it reconnects, with the URL it first used)"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events. `change` (data: a change as the feed gives it; `id`: the cursor after it), \
            `up-to-date` (every change so far was sent; `id`: the cursor), comments as heartbeats, and one last event before the stream ends: \
            `grant-revoked` or `grant-changed` (get a new token; after a revocation there is none; `grant-changed` names what to purge when the grant now reads less), `token-expired` (refresh the token and \
            reconnect with the last id), `reconnect` (the stream's lifetime ended or the server is stopping), `resync-required` (load again \
            without a cursor), `server-error` (reconnect later with the last id).", content_type = "text/event-stream"),
        (status = 400, description = "Bad `since`, `Last-Event-ID` or `tables`, or another parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A table in `tables` the grant names without reading", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A table in `tables` that does not exist (or is not granted)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The cursor is older than the changes the vault keeps: load again without a cursor", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The load exceeds a limit (memory, result size)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The app already holds its maximum of open streams on this vault (or runs its maximum of queries), or the server holds its maximum of streams; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The first read ran past the time limit and was stopped", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("dpop" = []))
)]
pub async fn stream(
    State(state): State<AppState>,
    credentials: ApiCredentials,
    headers: HeaderMap,
    websocket: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    RawQuery(raw): RawQuery,
) -> Response {
    let credentials = match &credentials.0 {
        Ok(c) => c,
        Err(e) => return problem(e, Scheme::Dpop),
    };
    let query = query_pairs(raw.as_deref())
        .and_then(|pairs| changes::parse_stream_query(&pairs))
        .and_then(|mut query| {
            // `Last-Event-ID` wins: an `EventSource` reconnects with the URL
            // it first used (its `since`) and the id it last received.
            if let Some(last) = headers.get("last-event-id") {
                let last = last
                    .to_str()
                    .map_err(|_| GatewayError::InvalidFilter {
                        parameter: "Last-Event-ID".into(),
                        reason: "not a cursor of this feed".into(),
                    })?
                    .trim();
                if !last.is_empty() {
                    query.since = Some(last.to_owned());
                }
            }
            Ok(query)
        });
    let tables = query.as_ref().ok().and_then(|q| q.tables.clone()).unwrap_or_default();
    let refused_by = Mutex::new(None);
    let refused = &refused_by;
    let served = state
        .services
        .gateway
        .run(credentials, Operation::Read, tables, |caller| async move {
            let query = query?;
            let permit = StreamPermit::acquire(caller.vault(), caller.app()).map_err(|which| {
                *refused.lock().expect("refusal") = Some(which);
                GatewayError::TooManyRequests {
                    limit: match which {
                        Refused::Grant => STREAMS_PER_GRANT,
                        Refused::Server => STREAMS_TOTAL,
                    },
                }
            })?;
            // Followed before the first read: a commit while it reads wakes
            // the stream afterwards.
            let mut watch = caller.gateway().engine().watch_commits(caller.vault());
            watch.mark_seen();
            let first = changes::stream_step(&caller, &query).await?;
            Ok(Opened {
                caller,
                query,
                first,
                watch,
                permit,
            })
        })
        .await;
    let mut response = match served.result {
        Ok(opened) => match websocket {
            Ok(upgrade) => upgrade
                .max_message_size(MAX_CLIENT_MESSAGE)
                .max_frame_size(MAX_CLIENT_MESSAGE)
                .on_upgrade(move |socket| serve_websocket(socket, opened)),
            Err(_) => serve_sse(opened),
        },
        Err(e) => match *refused_by.lock().expect("refusal") {
            Some(which) => too_many_streams(which),
            None => problem(&e, credentials.scheme),
        },
    };
    if let Some(app) = served.app {
        response
            .extensions_mut()
            .insert(super::super::request_log::AnsweredApp(app));
    }
    response
}

/// What a stream's task hands to its connection, whichever the transport.
#[derive(Debug)]
enum Out {
    /// An event: its name, its id (the cursor after it) and its data (JSON).
    Event {
        name: &'static str,
        id: Option<String>,
        data: String,
    },
    /// Nothing happened for a while: keeps proxies from closing the stream.
    Heartbeat,
}

impl Out {
    /// As a Server-Sent Event.
    fn into_sse(self) -> Event {
        match self {
            Out::Event { name, id, data } => {
                let event = Event::default().event(name);
                let event = match id {
                    Some(id) => event.id(id),
                    None => event,
                };
                event.data(data)
            }
            Out::Heartbeat => Event::default().comment("heartbeat"),
        }
    }

    /// As a WebSocket message: a text message
    /// `{"event": name, "id": cursor, "data": {...}}`, or a ping.
    fn into_websocket(self) -> Message {
        match self {
            Out::Event { name, id, data } => {
                let data: serde_json::Value = serde_json::from_str(&data).unwrap_or(serde_json::Value::Null);
                Message::Text(json!({ "event": name, "id": id, "data": data }).to_string().into())
            }
            Out::Heartbeat => Message::Ping(Vec::new().into()),
        }
    }
}

/// The stream as Server-Sent Events: a task reads the feed and hands each
/// event to the response body.
fn serve_sse(opened: Opened) -> Response {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(run(opened, tx));
    // The events of one batch are ready together, so the connection writes
    // them with one flush.
    let events = futures::stream::unfold((rx, Vec::<Out>::new().into_iter()), |(mut rx, mut batch)| async move {
        loop {
            if let Some(out) = batch.next() {
                return Some((Ok::<Event, Infallible>(out.into_sse()), (rx, batch)));
            }
            batch = rx.recv().await?.into_iter();
        }
    });
    let mut response = Sse::new(events).into_response();
    // Proxies that buffer responses (nginx) must pass events on at once.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Largest message a WebSocket client may send (it has nothing to say but
/// a close; pings and pongs are small).
const MAX_CLIENT_MESSAGE: usize = 4096;

/// The stream over an upgraded WebSocket: the same task and events as
/// Server-Sent Events, each a text message; heartbeats are pings. The
/// socket closes after the last event, or when the client closes it (what
/// the client sends otherwise is ignored).
async fn serve_websocket(mut socket: WebSocket, opened: Opened) {
    let (tx, mut rx) = mpsc::channel(1);
    tokio::spawn(run(opened, tx));
    loop {
        tokio::select! {
            batch = rx.recv() => {
                let Some(batch) = batch else {
                    let _ = timeout(SEND_TIMEOUT, socket.send(Message::Close(None))).await;
                    break;
                };
                // Queued together, flushed once.
                let sent = timeout(SEND_TIMEOUT, async {
                    for out in batch {
                        socket.feed(out.into_websocket()).await?;
                    }
                    socket.flush().await
                })
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    // Dropping the receiver ends the stream's task.
}

/// The 429 problem of a stream refused by [`StreamPermit::acquire`].
fn too_many_streams(which: Refused) -> Response {
    let (limit, detail) = match which {
        Refused::Grant => (
            STREAMS_PER_GRANT,
            format!(
                "this app already holds {STREAMS_PER_GRANT} change streams open on this vault; \
                 close one (or let it end) before opening another"
            ),
        ),
        Refused::Server => (
            STREAMS_TOTAL,
            format!("the server already holds {STREAMS_TOTAL} change streams open; retry later"),
        ),
    };
    let body = json!({
        "type": "urn:coffer:problem:too-many-requests",
        "title": "Too many open change streams",
        "status": 429,
        "detail": detail,
        "limit": limit,
    });
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// A stream's task: sends the first read's changes, then reads again after
/// each commit, until the client goes or something ends the stream.
async fn run(opened: Opened, tx: mpsc::Sender<Vec<Out>>) {
    let Opened {
        caller,
        mut query,
        first,
        mut watch,
        permit,
    } = opened;
    let timing = &*TIMING;
    let mut closing = CLOSING.subscribe();
    closing.mark_unchanged();
    let end_of_life = Instant::now() + timing.max_lifetime;
    let expires_in = (caller.expires_at() - chrono::Utc::now()).to_std().unwrap_or_default();
    let expiry = Instant::now() + expires_in;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + timing.heartbeat, timing.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);

    let mut step = Some(first);
    // Whether the client has been told it is up to date since it was last
    // sent a change (and at all: the replay's end is always told).
    let mut told_up_to_date = false;
    let mut read_now = false;
    let mut retry_at: Option<Instant> = None;
    let end = 'stream: loop {
        if let Some(done) = step.take() {
            let sent = done.changes.len();
            // A step's events go out as one batch (one write).
            let mut batch = Vec::with_capacity(sent + 2);
            // What the app must drop first, without an id of its own: a
            // client that reconnects before the next change is told again.
            if !done.purge.is_empty() {
                batch.push(Out::Event {
                    name: "purge",
                    id: None,
                    data: json!({ "purge": done.purge }).to_string(),
                });
            }
            for StreamChange { change, cursor } in done.changes {
                let data = match serde_json::to_string(&change) {
                    Ok(data) => data,
                    Err(e) => {
                        tracing::error!(error = %e, "a change stream's change could not be written");
                        break 'stream server_error();
                    }
                };
                batch.push(Out::Event {
                    name: "change",
                    id: Some(cursor.clone()),
                    data,
                });
                query.since = Some(cursor);
            }
            query.since = Some(done.cursor);
            told_up_to_date &= sent == 0;
            read_now = done.more;
            if !done.more && !told_up_to_date {
                batch.push(control("up-to-date", &query, json!({})));
                told_up_to_date = true;
            }
            if !batch.is_empty() && !send(&tx, batch).await {
                return;
            }
        }
        if read_now {
            if let Err(e) = changes::recheck(&caller) {
                break 'stream token_refused(&caller, &query, e).await;
            }
            watch.mark_seen();
            match changes::stream_step(&caller, &query).await {
                Ok(next) => step = Some(next),
                Err(GatewayError::TooManyRequests { .. } | GatewayError::QueryTimeout { .. }) => {
                    read_now = false;
                    retry_at = Some(Instant::now() + BUSY_RETRY);
                }
                Err(GatewayError::ResyncRequired) => {
                    break 'stream (
                        "resync-required",
                        json!({"reason": "resync-required", "detail": GatewayError::ResyncRequired.to_string()}),
                    );
                }
                Err(e @ GatewayError::InvalidToken { .. }) => break 'stream token_refused(&caller, &query, e).await,
                Err(e) => {
                    tracing::error!(error = %e, "a change stream's read failed");
                    break 'stream server_error();
                }
            }
            continue;
        }
        tokio::select! {
            biased;
            () = tx.closed() => return,
            _ = closing.changed() => {
                break 'stream ("reconnect", json!({"reason": "server-stopping", "detail": "the server is stopping; reconnect with the last id"}));
            }
            () = sleep_until(end_of_life) => {
                break 'stream ("reconnect", json!({"reason": "lifetime", "detail": "the stream reached its maximum lifetime; reconnect with the last id"}));
            }
            () = sleep_until(expiry) => {
                break 'stream ("token-expired", json!({"reason": "expired", "detail": "the access token expired; refresh it and reconnect with the last id"}));
            }
            _ = watch.changed() => read_now = true,
            () = sleep_until(retry_at.unwrap_or(end_of_life)), if retry_at.is_some() => {
                retry_at = None;
                read_now = true;
            }
            _ = heartbeat.tick() => {
                if let Err(e) = changes::recheck(&caller) {
                    break 'stream token_refused(&caller, &query, e).await;
                }
                if !send(&tx, vec![Out::Heartbeat]).await {
                    return;
                }
                // Commits are notified within this process only: a write
                // through another server reaches the stream by this read.
                read_now = true;
            }
        }
    };
    let (name, data) = end;
    let _ = send(&tx, vec![control(name, &query, data)]).await;
    drop(permit);
}

/// Hands `events` to the connection; `false` when the client is gone or took
/// nothing for [`SEND_TIMEOUT`].
async fn send(tx: &mpsc::Sender<Vec<Out>>, events: Vec<Out>) -> bool {
    matches!(timeout(SEND_TIMEOUT, tx.send(events)).await, Ok(Ok(())))
}

/// A control event `name` with `data`, its `id` the stream's cursor.
fn control(name: &'static str, query: &ChangesQuery, data: serde_json::Value) -> Out {
    Out::Event {
        name,
        id: query.since.clone(),
        data: data.to_string(),
    }
}

/// The last event of a stream that failed on the server's side.
fn server_error() -> (&'static str, serde_json::Value) {
    (
        "server-error",
        json!({"reason": "server-error", "detail": "the server could not read the changes; reconnect later with the last id"}),
    )
}

/// The last event of a stream whose token was refused on a recheck. After
/// a change of the grant it carries what the app must purge (`purge`, as in
/// the feed), when the grant now reads less; the app gets a new token and
/// reconnects with the last id.
async fn token_refused(caller: &Caller, query: &ChangesQuery, e: GatewayError) -> (&'static str, serde_json::Value) {
    let (code, reason) = match &e {
        GatewayError::InvalidToken { code, reason } => (*code, reason.clone()),
        other => ("revoked", other.to_string()),
    };
    let name = match code {
        "expired" => "token-expired",
        "grant_changed" => "grant-changed",
        _ => "grant-revoked",
    };
    let mut data = json!({"reason": code, "detail": reason});
    if code == "grant_changed" {
        match changes::purge_for_changed_grant(caller, query).await {
            Ok(Some(purge)) if !purge.is_empty() => data["purge"] = json!(purge),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "a changed grant's purge list could not be read"),
        }
    }
    (name, data)
}
