//! The sync section (`--sync`): app A writes contacts through the `/v1`
//! data API and app B receives them on its live change stream
//! (`GET /v1/changes/stream`). The figure is the time from A's
//! acknowledgement (its `201`) to B's `change` event for that row, one
//! write at a time, with 1, 100 and 1,000 streams open on the vault (the
//! others are readers of the same table held by other apps, which every
//! write wakes too); then the server memory an idle open stream costs.
//!
//! The server runs in a child process (this binary with `--sync` and
//! [`SERVER_ENV`] set: the same in-process server as the other sections),
//! so that its resident memory is the server's alone; the streams are
//! reqwest requests in this process, each read by a task of its own. B's
//! stream and A's writes run on this process's main runtime; the other
//! streams on a runtime of their own (one thread), as other clients would
//! be on other machines: B's reader is not queued behind the reading of
//! 999 other streams, but they still share the machine's cores.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use reqwest::header::AUTHORIZATION;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::server::{self, AppToken, ChildServer, Server, raise_fd_limit, rss_kib};
use crate::{Args, Report, percentile};

/// Set (to anything) in the environment of the child process that serves.
pub const SERVER_ENV: &str = "COFFER_BENCH_SYNC_SERVER";
/// Open streams the latency is measured with.
const STREAM_COUNTS: [usize; 3] = [1, 100, 1000];
/// Streams one app may hold on one vault (the server's per-grant limit), so
/// the streams are spread over this many per reader app.
const STREAMS_PER_APP: usize = 4;
/// What the writer asks for.
const WRITER_SCOPE: &str = "contacts.people:create";
/// What each reader asks for.
const READER_SCOPE: &str = "contacts.people:read";
/// Fewest writes timed per stream count (more while `--seconds` lasts).
const MIN_WRITES: usize = 100;
/// How long one event may take before the run fails.
const EVENT_WAIT: Duration = Duration::from_secs(60);
/// How long the server process may take to start and authorize its apps.
const STARTING: Duration = Duration::from_secs(600);
/// How long the server process lives at most, waiting for this one.
const SERVING: Duration = Duration::from_secs(30 * 60);
/// Pause before memory is read, for the last streams to settle.
const SETTLE: Duration = Duration::from_secs(2);

/// What the server process tells this one on its first line of output.
#[derive(Serialize, Deserialize)]
struct Ready {
    /// `http://127.0.0.1:{port}`.
    base_url: String,
    /// App A.
    writer: AppToken,
    /// The reader apps; the first is app B.
    readers: Vec<AppToken>,
}

/// Runs the sync section (or, in the child process, serves it) and prints
/// its figures.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    if std::env::var_os(SERVER_ENV).is_some() {
        return serve().await;
    }
    let mut report = Report { rows: Vec::new() };
    measure(args, &mut report).await?;
    report.print();
    Ok(())
}

/// The server process: serves the API, authorizes the writer and as many
/// reader apps as the largest stream count needs, prints [`Ready`] as one
/// line, and serves until its standard input is closed.
async fn serve() -> anyhow::Result<()> {
    let most = STREAM_COUNTS.iter().copied().max().unwrap_or(1);
    raise_fd_limit(most as u64 + 1024)?;
    let server = Server::start(None).await?;
    let (user, _) = server::create_user(&server.services).await?;
    let writer = server::app_token(&server.services, user, "Coffer sync writer", WRITER_SCOPE).await?;
    let readers = server::app_tokens(&server.services, user, READER_SCOPE, most.div_ceil(STREAMS_PER_APP)).await?;
    let ready = Ready {
        base_url: server.base_url.clone(),
        writer,
        readers,
    };
    println!("{}", serde_json::to_string(&ready)?);
    // Standard input is read on a thread of its own, which does not keep the
    // process alive once the server has stopped.
    let (eof, closed) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = eof.send(());
    });
    let _ = timeout(SERVING, closed).await;
    server.stop().await
}

/// The runtime the other readers' streams run on. It is shut down in the
/// background when dropped (on every path, errors included): a runtime must
/// not be dropped inside another.
struct OtherRuntime(Option<tokio::runtime::Runtime>);

impl OtherRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("the runtime lives until dropped").handle()
    }
}

impl Drop for OtherRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// One open stream: the task reading it (stopped when dropped).
struct OpenStream {
    task: JoinHandle<()>,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens a stream with `token`; waits for its first `up-to-date` event.
/// With `events`, every `change` event's row id is sent there with the
/// time it was read; otherwise events are read and dropped.
async fn open_stream(
    client: &reqwest::Client,
    base_url: &str,
    token: &str,
    events: Option<mpsc::UnboundedSender<(String, Instant)>>,
) -> anyhow::Result<OpenStream> {
    let mut response = client
        .get(format!("{base_url}/v1/changes/stream?tables=contacts.people"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await
        .context("opening a stream")?;
    ensure!(
        response.status() == 200,
        "a stream was refused: {} {}",
        response.status(),
        response.text().await.unwrap_or_default()
    );
    let (live, is_live) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut live = Some(live);
        let mut buf = String::new();
        while let Ok(Some(bytes)) = response.chunk().await {
            let at = Instant::now();
            buf.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let name = block.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or("");
                if name == "up-to-date" {
                    if let Some(live) = live.take() {
                        let _ = live.send(());
                    }
                } else if let (Some(events), "change") = (&events, name) {
                    let data = block.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or("{}");
                    let change: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
                    if let Some(id) = change["id"].as_str() {
                        let _ = events.send((id.to_owned(), at));
                    }
                }
            }
        }
    });
    timeout(EVENT_WAIT, is_live)
        .await
        .context("a stream did not say it was up to date in time")?
        .context("a stream ended before it was up to date")?;
    Ok(OpenStream { task })
}

/// Starts the server process, then for each stream count opens streams up
/// to it and times writes; adds the figures to `report`.
async fn measure(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let most = STREAM_COUNTS.iter().copied().max().unwrap_or(1);
    raise_fd_limit(most as u64 + 1024)?;
    let (server, ready): (ChildServer, Ready) = ChildServer::start(&["--sync"], &[(SERVER_ENV, "1")], STARTING).await?;
    let pid = server.pid;
    ensure!(
        ready.readers.len() * STREAMS_PER_APP >= most,
        "the server process authorized too few readers"
    );
    println!(
        "live change stream: A writes one contact at a time over HTTP, B reads it on its stream; \
         the other streams are readers of the same table ({STREAMS_PER_APP} per app); server in a child process"
    );

    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")?;
    // The other readers' runtime.
    let others = OtherRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("other-streams")
            .enable_all()
            .build()
            .context("building the other streams' runtime")?,
    ));
    let others_client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .context("building the other streams' HTTP client")?;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut streams = vec![open_stream(&client, &ready.base_url, &ready.readers[0].token, Some(events_tx)).await?];
    let rows_url = format!("{}/v1/tables/contacts.people/rows", ready.base_url);
    let writer_auth = format!("Bearer {}", ready.writer.token);
    let mut rss = Vec::new();
    for (round, n) in STREAM_COUNTS.into_iter().enumerate() {
        tokio::time::sleep(SETTLE).await;
        let before = (streams.len(), rss_kib(pid)?);
        while streams.len() < n {
            let i = streams.len();
            let batch: Vec<(String, String)> = (i..n.min(i + 64))
                .map(|j| (ready.base_url.clone(), ready.readers[j / STREAMS_PER_APP].token.clone()))
                .collect();
            let client = others_client.clone();
            let opened = others
                .handle()
                .spawn(async move {
                    futures::future::try_join_all(
                        batch
                            .iter()
                            .map(|(base_url, token)| open_stream(&client, base_url, token, None)),
                    )
                    .await
                })
                .await
                .context("opening other streams")??;
            streams.extend(opened);
        }
        tokio::time::sleep(SETTLE).await;
        rss.push((before, (n, rss_kib(pid)?)));

        println!("  timing writes with {n} open stream(s)");
        let mut latencies = Vec::new();
        let mut first = 0usize;
        let started = Instant::now();
        let budget = Duration::from_secs(args.seconds);
        for i in 0.. {
            if i >= MIN_WRITES && started.elapsed() >= budget {
                break;
            }
            let id = format!("s{round}-{i:06}");
            let response = client
                .post(&rows_url)
                .header(AUTHORIZATION, &writer_auth)
                .json(&json!({"id": id, "display_name": format!("Sync {i}")}))
                .send()
                .await
                .context("a write")?;
            let acked = Instant::now();
            ensure!(response.status() == 201, "a write answered {}", response.status());
            let received = timeout(EVENT_WAIT, async {
                while let Some((got, at)) = events.recv().await {
                    if got == id {
                        return Some(at);
                    }
                }
                None
            })
            .await
            .with_context(|| format!("B did not receive {id} in time"))?
            .context("B's stream ended")?;
            if received < acked {
                first += 1;
            }
            latencies.push(received.saturating_duration_since(acked));
        }
        latencies.sort();
        println!(
            "  {n} open stream(s): {} writes; B's event came before A's acknowledgement {first} times (counted as 0)",
            latencies.len()
        );
        for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
            report.single(
                &format!("sync: A's ack to B's event {name}, {n} open streams"),
                percentile(&latencies, p),
                "µs",
                "one write at a time; every stream woken",
            );
            if name == "p50" {
                report.goal("p50 ≤ 5 ms on loopback", percentile(&latencies, p) <= 5_000.0);
            }
        }
    }
    // The growth while the last round opened its streams, before its
    // writes: what idle streams cost.
    let ((few, before), (all, after)) = rss[rss.len() - 1];
    let per_stream = after.saturating_sub(before) as f64 / (all - few).max(1) as f64;
    println!(
        "  server RSS {before} KiB with {few} streams open, {after} KiB with {all}: {per_stream:.1} KiB per idle \
         open stream (VmRSS of the server process; kernel socket buffers are not in it)"
    );
    report.single(
        &format!("sync: server RSS per idle open stream ({few} to {all} streams)"),
        per_stream,
        "KiB",
        "a stream's task, channel, commit watch and connection",
    );

    drop(streams);
    drop(others);
    server.stop().await?;
    Ok(())
}
