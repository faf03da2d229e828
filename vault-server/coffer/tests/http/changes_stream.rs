//! The live change stream (`GET /v1/changes/stream`, Server-Sent Events)
//! through the running server, with tokens from the real OAuth flow: apps
//! with different grants on one vault see exactly their changes, in order,
//! and resume with the last event id without gaps or repeats; a revoked
//! grant ends the stream; the streams one app may open are limited; a
//! server killed while writes are acknowledged loses no acknowledged change
//! and repeats none after a restart. Every wait for an event is bounded.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

/// How long a test waits for one event before failing.
const WAIT: Duration = Duration::from_secs(20);

/// One Server-Sent Event; a comment (the heartbeat) has `event` ":".
#[derive(Clone, Debug)]
pub(crate) struct Sse {
    pub(crate) event: String,
    pub(crate) id: Option<String>,
    pub(crate) data: String,
}

impl Sse {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// An open stream, read one event at a time.
pub(crate) struct Stream {
    response: reqwest::Response,
    buf: String,
}

/// `/v1/changes/stream` with `query` encoded.
fn stream_path(query: &[(&str, &str)]) -> String {
    with_query("/v1/changes/stream", query)
}

impl Stream {
    /// Opens a stream with `token`; `last_id` is sent as `Last-Event-ID`.
    pub(crate) async fn open(base: &str, token: &str, query: &[(&str, &str)], last_id: Option<&str>) -> Stream {
        let auth = format!("Bearer {token}");
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend(last_id.map(|id| ("last-event-id", id)));
        Stream::open_with(base, query, &headers).await
    }

    /// Opens a stream sending `headers`.
    async fn open_with(base: &str, query: &[(&str, &str)], headers: &[(&str, &str)]) -> Stream {
        let mut request = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("{base}{}", stream_path(query)))
            .header("accept", "text/event-stream");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = tokio::time::timeout(WAIT, request.send())
            .await
            .expect("the stream answers in time")
            .expect("the stream answers");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if status != 200 {
            let text = response.text().await.unwrap_or_default();
            panic!("the stream was refused: {status} {text}");
        }
        assert!(content_type.starts_with("text/event-stream"), "{content_type}");
        Stream {
            response,
            buf: String::new(),
        }
    }

    /// The next event or comment; `None` when the stream has ended. Fails
    /// the test after [`WAIT`].
    pub(crate) async fn next_any(&mut self) -> Option<Sse> {
        self.next_before(Instant::now() + WAIT).await
    }

    /// The next event or comment, failing the test at `deadline`.
    async fn next_before(&mut self, deadline: Instant) -> Option<Sse> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                return Some(parse_block(&block));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(Ok(None)) | Ok(Err(_)) => return None,
                Err(_) => panic!("no event within {WAIT:?}; received so far: {:?}", self.buf),
            }
        }
    }

    /// The next event, heartbeats skipped; fails the test after [`WAIT`].
    async fn next(&mut self) -> Option<Sse> {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.next_before(deadline).await {
                Some(e) if e.event == ":" => continue,
                other => return other,
            }
        }
    }

    /// The next event, which must be `name`.
    pub(crate) async fn expect(&mut self, name: &str) -> Sse {
        let event = self
            .next()
            .await
            .unwrap_or_else(|| panic!("the stream ended before `{name}`"));
        assert_eq!(event.event, name, "{event:?}");
        event
    }

    /// The `change` events until (and with) the one for row `id`;
    /// `up-to-date` events skipped.
    async fn changes_until(&mut self, id: &str) -> Vec<Sse> {
        let mut out = Vec::new();
        loop {
            let event = self
                .next()
                .await
                .unwrap_or_else(|| panic!("the stream ended before `{id}`: {out:?}"));
            match event.event.as_str() {
                "up-to-date" => continue,
                "change" => {
                    let done = event.json()["id"] == id;
                    out.push(event);
                    if done {
                        return out;
                    }
                }
                other => panic!("unexpected `{other}` event: {event:?}"),
            }
        }
    }
}

fn parse_block(block: &str) -> Sse {
    let mut event = Sse {
        event: "message".into(),
        id: None,
        data: String::new(),
    };
    for line in block.lines() {
        if line.starts_with(':') {
            event.event = ":".into();
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.event = value.to_owned(),
            "id" => event.id = Some(value.to_owned()),
            "data" => {
                if !event.data.is_empty() {
                    event.data.push('\n');
                }
                event.data.push_str(value);
            }
            _ => {}
        }
    }
    event
}

/// `(op, id)` of change events.
fn ops(events: &[Sse]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            let c = e.json();
            (
                c["op"].as_str().unwrap().to_owned(),
                c["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

/// An access token of a new app `name` of `user` for `scope`.
async fn token(server: &Server, user: &Browser, name: &str, scope: &str) -> String {
    authorize_app(user, &server.app(name), scope, None).await.access
}

#[tokio::test]
async fn each_app_streams_exactly_its_grant_in_order_and_resumes_without_gaps_or_repeats() {
    let server = Server::start();
    let user = server.new_user("ada@example.org", 2).await;
    let a = server.api(
        &token(
            &server,
            &user,
            "Alpha",
            "contacts.people:read+write notes.notes:read+create",
        )
        .await,
    );
    let b_token = token(&server, &user, "Beta", "contacts.people(display_name):read").await;
    let c_token = token(&server, &user, "Gamma", "notes.notes:read").await;
    let d_token = token(&server, &user, "Delta", "contacts.people(display_name):read+create:own").await;
    let d = server.api(&d_token);

    // Opened on an empty vault: the load is empty, and says so.
    let mut b = Stream::open(&server.base, &b_token, &[], None).await;
    let b_start = b.expect("up-to-date").await;
    let mut c = Stream::open(&server.base, &c_token, &[], None).await;
    c.expect("up-to-date").await;
    let mut d_stream = Stream::open(&server.base, &d_token, &[("tables", "contacts.people")], None).await;
    d_stream.expect("up-to-date").await;

    d.post(
        "/v1/tables/contacts.people/rows",
        &json!({"id": "d1", "display_name": "Dee"}),
    )
    .await
    .expect(201);
    a.post(
        "/v1/tables/contacts.people/rows",
        &json!([
            {"id": "p1", "display_name": "Ada", "email": "ada@example.org"},
            {"id": "p2", "display_name": "Al", "email": "al@example.org"},
        ]),
    )
    .await
    .expect(201);
    a.patch("/v1/tables/contacts.people/rows/p1", &json!({"display_name": "Ada L"}))
        .await
        .expect(200);
    a.patch(
        "/v1/tables/contacts.people/rows/d1",
        &json!({"email": "dee@example.org"}),
    )
    .await
    .expect(200);
    a.delete("/v1/tables/contacts.people/rows/p2").await.expect(204);
    a.delete("/v1/tables/contacts.people/rows/d1").await.expect(204);
    a.post("/v1/tables/notes.notes/rows", &json!({"id": "n1", "title": "marker"}))
        .await
        .expect(201);
    a.post(
        "/v1/tables/contacts.people/rows",
        &json!({"id": "end", "display_name": "End"}),
    )
    .await
    .expect(201);
    d.post(
        "/v1/tables/contacts.people/rows",
        &json!({"id": "d-end", "display_name": "Dee's end"}),
    )
    .await
    .expect(201);

    // B reads every row, one column: every change, in order, no email.
    let expected_b = pairs(&[
        ("insert", "d1"),
        ("insert", "p1"),
        ("insert", "p2"),
        ("update", "p1"),
        ("update", "d1"),
        ("delete", "p2"),
        ("delete", "d1"),
        ("insert", "end"),
    ]);
    let seen_b = b.changes_until("end").await;
    assert_eq!(ops(&seen_b), expected_b);
    assert_eq!(seen_b[3].json()["row"]["display_name"], "Ada L");
    assert_eq!(seen_b[5].json()["row"], Value::Null);
    let text: String = seen_b.iter().map(|e| e.data.clone()).collect();
    assert!(!text.contains("example.org"), "{text}");
    let seqs: Vec<i64> = seen_b.iter().map(|e| e.json()["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(seen_b.iter().all(|e| e.id.is_some()), "every change has an id");

    // D reads only the rows it created: A's changes to them included.
    let seen_d = d_stream.changes_until("d-end").await;
    assert_eq!(
        ops(&seen_d),
        pairs(&[
            ("insert", "d1"),
            ("update", "d1"),
            ("delete", "d1"),
            ("insert", "d-end")
        ])
    );
    assert_eq!(seen_d[1].json()["row"].get("email"), None, "{:?}", seen_d[1]);

    // C reads no contacts: its only change is the note, which came after
    // every contact change but the two ends.
    let seen_c = c.changes_until("n1").await;
    assert_eq!(ops(&seen_c), pairs(&[("insert", "n1")]));
    assert_eq!(seen_c[0].json()["table"], "notes.notes");

    // Resume after the third change with `Last-Event-ID`: the rest, once.
    drop(b);
    let third = seen_b[2].id.clone().unwrap();
    let mut again = Stream::open(&server.base, &b_token, &[], Some(&third)).await;
    let rest = again.changes_until("end").await;
    assert_eq!(ops(&rest), expected_b[3..]);
    let rest_ids: Vec<_> = rest.iter().map(|e| e.id.clone()).collect();
    let first_ids: Vec<_> = seen_b[3..].iter().map(|e| e.id.clone()).collect();
    assert_eq!(rest_ids, first_ids, "the same cursors on every stream");
    // … the same with `since`, and `Last-Event-ID` wins over `since`.
    let fifth = seen_b[4].id.clone().unwrap();
    let mut by_since = Stream::open(&server.base, &b_token, &[("since", &fifth)], None).await;
    assert_eq!(ops(&by_since.changes_until("end").await), expected_b[5..]);
    let mut both = Stream::open(&server.base, &b_token, &[("since", &third)], Some(&fifth)).await;
    assert_eq!(ops(&both.changes_until("end").await), expected_b[5..]);

    // The feed from the stream's first cursor gives the same changes.
    let mut since = b_start.id.clone().unwrap();
    let mut from_feed = Vec::new();
    loop {
        let page = server
            .api(&b_token)
            .get(&with_query("/v1/changes", &[("since", &since)]))
            .await;
        page.expect(200);
        from_feed.extend(page.body["changes"].as_array().unwrap().iter().map(|c| {
            (
                c["op"].as_str().unwrap().to_owned(),
                c["id"].as_str().unwrap().to_owned(),
            )
        }));
        since = page.body["cursor"].as_str().unwrap().to_owned();
        if page.body["more"] == json!(false) {
            break;
        }
    }
    let mut with_d_end = expected_b.clone();
    with_d_end.push(("insert".into(), "d-end".into()));
    assert_eq!(from_feed, with_d_end);

    // A stream takes no `limit`, and a cursor it cannot verify is refused,
    // from the URL or from `Last-Event-ID`.
    let b_api = server.api(&b_token);
    let r = b_api.get(&stream_path(&[("limit", "10")])).await;
    r.expect_problem(400, "invalid-filter");
    assert_eq!(r.body["parameter"], "limit");
    b_api
        .get(&stream_path(&[("since", "made-up")]))
        .await
        .expect_problem(400, "invalid-filter");
    let forged = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(server.url("/v1/changes/stream"))
        .header("authorization", format!("Bearer {b_token}"))
        .header("last-event-id", "made-up")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    b_api
        .with_token("nope")
        .get("/v1/changes/stream")
        .await
        .expect_problem(401, "invalid-token");
}

#[tokio::test]
async fn revoking_the_grant_ends_an_open_stream_with_grant_revoked() {
    let server = Server::start_with(&[("COFFER_STREAM_HEARTBEAT_SECS", "0.2")]);
    let user = server.new_user("ada@example.org", 2).await;
    let b_token = token(&server, &user, "Beta", "contacts.people:read").await;
    let mut stream = Stream::open(&server.base, &b_token, &[], None).await;
    stream.expect("up-to-date").await;
    // Heartbeats come while nothing changes.
    let beat = stream.next_any().await.expect("a heartbeat");
    assert_eq!(beat.event, ":", "{beat:?}");

    revoke_on_dashboard(&user, "Beta").await;
    let revoked = Instant::now();
    let event = stream.expect("grant-revoked").await;
    assert_eq!(event.json()["reason"], "revoked", "{event:?}");
    assert!(event.id.is_some(), "the last event carries the cursor");
    assert!(
        stream.next_any().await.is_none(),
        "the stream ends after `grant-revoked`"
    );
    assert!(
        revoked.elapsed() < Duration::from_secs(10),
        "ended {:?} after the revocation",
        revoked.elapsed()
    );
    // And no new stream opens with that token.
    server
        .api(&b_token)
        .get("/v1/changes/stream")
        .await
        .expect_problem(401, "invalid-token");
}

#[tokio::test]
async fn a_stream_of_a_subset_sends_only_its_rows_and_columns() {
    let server = Server::start();
    let user = server.new_user("ada@example.org", 2).await;
    let a = server.api(&token(&server, &user, "Alpha", "contacts.people:read+write").await);
    let b_token = token(&server, &user, "Beta", "contacts.people:read").await;
    let shape = [
        ("filter[contacts.people]", "favorite=is.true"),
        ("select[contacts.people]", "display_name"),
    ];
    let mut stream = Stream::open(&server.base, &b_token, &shape, None).await;
    stream.expect("up-to-date").await;
    for (id, favorite) in [("x1", false), ("x2", true)] {
        a.post(
            "/v1/tables/contacts.people/rows",
            &json!({"id": id, "display_name": id.to_uppercase(), "favorite": favorite, "email": "x@example.org"}),
        )
        .await
        .expect(201);
    }
    a.patch("/v1/tables/contacts.people/rows/x2", &json!({"favorite": false}))
        .await
        .expect(200);
    let first = stream.expect("change").await.json();
    assert_eq!(first["op"], "insert");
    assert_eq!(first["row"], json!({"id": "x2", "display_name": "X2"}));
    let mut next = stream.next().await.expect("the stream goes on");
    while next.event == "up-to-date" {
        next = stream.next().await.expect("the stream goes on");
    }
    assert_eq!(next.event, "change", "{next:?}");
    assert_eq!(
        (next.json()["op"].clone(), next.json()["id"].clone()),
        (json!("delete"), json!("x2"))
    );
}

#[tokio::test]
async fn the_stream_also_runs_over_a_websocket() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let server = Server::start_with(&[("COFFER_STREAM_HEARTBEAT_SECS", "0.2")]);
    let user = server.new_user("ada@example.org", 2).await;
    let a = server.api(&token(&server, &user, "Alpha", "contacts.people:read+write").await);
    let b_token = token(&server, &user, "Beta", "contacts.people(display_name):read").await;
    let url = format!("{}/v1/changes/stream", server.base.replacen("http://", "ws://", 1));
    let connect = |token: Option<&str>| {
        let mut request = url.as_str().into_client_request().unwrap();
        if let Some(token) = token {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
    };

    // Without a token the upgrade is refused with the same 401 as any request.
    match connect(None).await.expect("answers in time") {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected a 401: {other:?}"),
    }

    let (mut socket, _) = connect(Some(&b_token)).await.expect("in time").expect("upgraded");
    let mut next_event = async || loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .expect("a message");
        match message {
            Message::Text(text) => return serde_json::from_str::<Value>(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    };
    let first = next_event().await;
    assert_eq!(first["event"], "up-to-date", "{first}");
    assert!(first["id"].is_string(), "{first}");
    a.post(
        "/v1/tables/contacts.people/rows",
        &json!({"id": "w1", "display_name": "Wes", "email": "wes@example.org"}),
    )
    .await
    .expect(201);
    let change = next_event().await;
    assert_eq!(change["event"], "change", "{change}");
    assert_eq!(change["data"]["op"], "insert");
    assert_eq!(change["data"]["row"]["display_name"], "Wes");
    assert!(change["data"]["row"].get("email").is_none(), "{change}");
    let cursor = change["id"].as_str().unwrap().to_owned();

    // Pings keep it alive; the client's own messages are ignored.
    socket.send(Message::Text("hello".into())).await.unwrap();
    let pinged = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Ok(Message::Ping(_))) = socket.next().await {
                return;
            }
        }
    })
    .await;
    assert!(pinged.is_ok(), "no ping within {WAIT:?}");
    socket.close(None).await.unwrap();

    // The cursor of a WebSocket event resumes a Server-Sent Events stream.
    a.patch("/v1/tables/contacts.people/rows/w1", &json!({"display_name": "Wesley"}))
        .await
        .expect(200);
    let mut sse = Stream::open(&server.base, &b_token, &[("since", &cursor)], None).await;
    let update = sse.expect("change").await.json();
    assert_eq!(
        (update["op"].clone(), update["row"]["display_name"].clone()),
        (json!("update"), json!("Wesley"))
    );
}

#[tokio::test]
async fn narrowing_the_grant_ends_an_open_stream_with_what_to_purge() {
    let server = Server::start_with(&[("COFFER_STREAM_HEARTBEAT_SECS", "0.2")]);
    let user = server.new_user("ada@example.org", 2).await;
    let b_token = token(
        &server,
        &user,
        "Beta",
        "contacts.people(display_name,email):read notes.notes:read",
    )
    .await;
    let mut stream = Stream::open(&server.base, &b_token, &[], None).await;
    stream.expect("up-to-date").await;

    narrow_on_dashboard(&user, "Beta", &["contacts.people(display_name):read"]).await;
    let narrowed = Instant::now();
    let event = stream.expect("grant-changed").await;
    let data = event.json();
    assert_eq!(data["reason"], "grant_changed", "{data}");
    assert_eq!(
        data["purge"],
        json!([
            {"table": "notes.notes", "drop": "table"},
            {"table": "contacts.people", "drop": "columns", "columns": ["email"]},
        ]),
        "{data}"
    );
    assert!(event.id.is_some(), "the last event carries the cursor");
    assert!(
        stream.next_any().await.is_none(),
        "the stream ends after `grant-changed`"
    );
    assert!(narrowed.elapsed() < Duration::from_secs(10), "{:?}", narrowed.elapsed());
}

#[tokio::test]
async fn one_app_may_hold_four_streams_and_the_fifth_is_429() {
    let server = Server::start_with(&[("COFFER_STREAM_HEARTBEAT_SECS", "0.2")]);
    let user = server.new_user("ada@example.org", 2).await;
    let a_token = token(&server, &user, "Alpha", "contacts.people:read").await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut s = Stream::open(&server.base, &a_token, &[], None).await;
        s.expect("up-to-date").await;
        open.push(s);
    }
    let api = server.api(&a_token);
    let refused = api.get("/v1/changes/stream").await;
    refused.expect_problem(429, "too-many-requests");
    assert_eq!(refused.body["limit"], 4, "{}", refused.text);
    assert!(
        refused.body["detail"].as_str().unwrap().contains("streams"),
        "{}",
        refused.text
    );
    assert!(refused.headers.get("retry-after").is_some());

    // Another app of the same user is not held back by it.
    let other = token(&server, &user, "Beta", "contacts.people:read").await;
    Stream::open(&server.base, &other, &[], None)
        .await
        .expect("up-to-date")
        .await;

    // A closed stream frees its place (noticed by its next heartbeat).
    drop(open.pop());
    let deadline = Instant::now() + WAIT;
    loop {
        // Not `api.get`, which reads the whole body: a stream that opens is
        // kept open.
        let probe = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(server.url("/v1/changes/stream"))
            .header("authorization", format!("Bearer {a_token}"))
            .send()
            .await
            .unwrap();
        if probe.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the closed stream's place was never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_stream_ends_with_reconnect_at_its_maximum_lifetime() {
    let server = Server::start_with(&[("COFFER_STREAM_MAX_LIFETIME_SECS", "1")]);
    let user = server.new_user("ada@example.org", 2).await;
    let a_token = token(&server, &user, "Alpha", "contacts.people:read+create").await;
    let mut stream = Stream::open(&server.base, &a_token, &[], None).await;
    let start = stream.expect("up-to-date").await;
    let end = stream.expect("reconnect").await;
    assert_eq!(end.json()["reason"], "lifetime");
    assert!(start.id.is_some() && end.id.is_some());
    assert!(stream.next_any().await.is_none());
    // Resuming with its id gives what came after, once.
    server
        .api(&a_token)
        .post(
            "/v1/tables/contacts.people/rows",
            &json!({"id": "p1", "display_name": "Ada"}),
        )
        .await
        .expect(201);
    let mut again = Stream::open(&server.base, &a_token, &[], end.id.as_deref()).await;
    assert_eq!(ops(&again.changes_until("p1").await), pairs(&[("insert", "p1")]));
}

#[tokio::test]
async fn a_dpop_bound_token_streams_with_a_proof_of_its_key() {
    let server = Server::start();
    let user = server.new_user("ada@example.org", 2).await;
    let client_id = server.app("Notes Pro");
    let key = DpopKey::new();
    let (verifier, challenge) = pkce();
    let location = consent(
        &user,
        &authorize_path(&client_id, APP_REDIRECT, "notes.notes:read+create", Some(&challenge)),
        None,
    )
    .await;
    let code = query_param(&location, "code").unwrap();
    let token_url = server.url("/oauth/token");
    let (status, _, tokens) = oauth_post(
        &client(),
        &token_url,
        &code_form(&code, APP_REDIRECT, &client_id, Some(&verifier)),
        &[("dpop", &key.proof("POST", &token_url, None))],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "DPoP");
    let token = tokens["access_token"].as_str().unwrap();

    // As a bearer token it is refused, as everywhere in `/v1`.
    let api = server.api(token);
    let refused = api.get("/v1/changes/stream").await;
    refused.expect_problem(401, "invalid-token");
    assert_eq!(refused.body["reason"], "dpop_required");

    // With a proof for this request it streams.
    let url = server.url("/v1/changes/stream");
    let proof = key.proof("GET", &url, Some(&ath(token)));
    let auth = format!("DPoP {token}");
    let mut stream = Stream::open_with(&server.base, &[], &[("authorization", &auth), ("dpop", &proof)]).await;
    stream.expect("up-to-date").await;
    let rows = server.url("/v1/tables/notes.notes/rows");
    let written = client()
        .post(&rows)
        .header("authorization", &auth)
        .header("dpop", key.proof("POST", &rows, Some(&ath(token))))
        .json(&json!({"id": "n1", "title": "Hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 201);
    assert_eq!(ops(&stream.changes_until("n1").await), pairs(&[("insert", "n1")]));
}

// ---------------------------------------------------------------------------
// A server killed with SIGKILL and started again on its data directory.

/// A `coffer serve` of this test on a data directory it keeps.
struct Process {
    child: Child,
    base: String,
}

impl Process {
    fn start(data_dir: &Path) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(SERVE_ON_FREE_PORTS)
            .arg(data_dir)
            .env("COFFER_LOG", "warn")
            .env_remove("COFFER_PUBLIC_URL")
            .env_remove("COFFER_CONFIG")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start coffer");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines.next().expect("coffer exited before serving").unwrap();
            if let Some(rest) = line.split("http://").nth(1) {
                break format!("http://{}", rest.split('/').next().unwrap());
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Process { child, base }
    }

    /// SIGKILL: no shutdown of any kind.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn after_a_sigkill_resuming_delivers_every_acknowledged_change_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut first = Process::start(&data);
    let user = Browser {
        client: client_from(loopback(2)),
        base: first.base.clone(),
    };
    user.sign_up("ada@example.org", None).await;
    let register = |name: &str| -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args([
                "app",
                "register",
                "--name",
                name,
                "--json",
                "--redirect-uri",
                APP_REDIRECT,
            ])
            .args(["--homepage", "https://app.example", "--data-dir"])
            .arg(&data)
            .env("COFFER_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let app: Value = serde_json::from_slice(&out.stdout).unwrap();
        app["client_id"].as_str().unwrap().to_owned()
    };
    let a_token = authorize_app(&user, &register("Alpha"), "contacts.people:read+create", None)
        .await
        .access;
    let b_token = authorize_app(&user, &register("Beta"), "contacts.people:read", None)
        .await
        .access;

    let mut stream = Stream::open(&first.base, &b_token, &[], None).await;
    let start = stream.expect("up-to-date").await;
    // B reads on in the background until the stream breaks.
    let received: Arc<Mutex<Vec<Sse>>> = Arc::default();
    let reader = {
        let received = received.clone();
        tokio::spawn(async move {
            loop {
                match tokio::time::timeout(WAIT, stream.next()).await {
                    Ok(Some(e)) => received.lock().unwrap().push(e),
                    Ok(None) | Err(_) => return,
                }
            }
        })
    };
    // A writes one row at a time; the server dies with writes in flight.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let writer = {
        let acked = acked.clone();
        let a = Api::new(&first.base, &a_token);
        tokio::spawn(async move {
            for i in 0usize.. {
                let id = format!("w{i:04}");
                let sent = a
                    .client
                    .post(format!("{}/v1/tables/contacts.people/rows", a.base))
                    .header("authorization", format!("Bearer {}", a.token))
                    .json(&json!({"id": id, "display_name": "W"}))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 201 => acked.lock().unwrap().push(id),
                    Ok(r) => panic!("write {id}: {}", r.status()),
                    Err(_) => return i,
                }
            }
            unreachable!()
        })
    };
    let deadline = Instant::now() + WAIT;
    while acked.lock().unwrap().len() < 40 {
        assert!(Instant::now() < deadline, "the writes were not acknowledged");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill();
    let attempted = tokio::time::timeout(WAIT, writer).await.unwrap().unwrap();
    tokio::time::timeout(WAIT * 2, reader).await.unwrap().unwrap();
    let acked = acked.lock().unwrap().clone();
    let before: Vec<Sse> = received.lock().unwrap().clone();
    assert!(
        before.iter().all(|e| e.event == "change" || e.event == "up-to-date"),
        "{before:?}"
    );
    let last_id = before
        .iter()
        .rev()
        .find_map(|e| e.id.clone())
        .or(start.id.clone())
        .unwrap();

    // Started again on the same data directory; B resumes with its last id.
    let second = Process::start(&data);
    Api::new(&second.base, &a_token)
        .post(
            "/v1/tables/contacts.people/rows",
            &json!({"id": "end", "display_name": "End"}),
        )
        .await
        .expect(201);
    let mut resumed = Stream::open(&second.base, &b_token, &[], Some(&last_id)).await;
    let after = resumed.changes_until("end").await;

    let delivered: Vec<String> = before
        .iter()
        .chain(after.iter())
        .filter(|e| e.event == "change")
        .map(|e| e.json()["id"].as_str().unwrap().to_owned())
        .collect();
    for id in &acked {
        let n = delivered.iter().filter(|d| *d == id).count();
        assert_eq!(n, 1, "acknowledged {id} delivered {n} times: {delivered:?}");
    }
    let mut unique = delivered.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), delivered.len(), "a change came twice: {delivered:?}");
    // Only rows that were written (acknowledged, or in flight at the kill).
    assert!(
        delivered
            .iter()
            .all(|id| id == "end" || id[1..].parse::<usize>().is_ok_and(|i| i <= attempted)),
        "{delivered:?}"
    );
    assert!(
        before.iter().any(|e| e.event == "change"),
        "the stream was delivering when the server was killed: {before:?}"
    );
}
