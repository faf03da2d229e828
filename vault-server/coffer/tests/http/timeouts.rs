//! The HTTP listener's limits: a client that never finishes its request
//! head is disconnected after the header read timeout, a request that takes
//! too long gets a 503 problem, and neither holds up other clients.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{Server, raw_request as request};

/// Whether the server closes `stream` (EOF or reset) before `deadline`;
/// whatever it sends first (e.g. an error response) is read and ignored.
fn closed_by(mut stream: TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => return true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return false,
            Err(e) => panic!("reading: {e}"),
        }
    }
}

#[test]
fn half_sent_requests_are_closed_within_the_header_timeout() {
    let server = Server::start_with(&[("COFFER_HEADER_READ_TIMEOUT_SECS", "2")]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    let slow: Vec<TcpStream> = (0..200)
        .map(|i| {
            let mut stream = TcpStream::connect(&addr).expect("connect");
            write!(stream, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Slow-{i}: ").unwrap();
            stream
        })
        .collect();

    // Meanwhile a normal client is answered at once.
    let asked = Instant::now();
    let (status, body) = request(
        &addr,
        &format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "answered after {:?}",
        asked.elapsed()
    );

    // Every half-sent request is closed within the 2 s timeout (plus slack
    // for a loaded machine), far sooner than a client could keep it alive.
    let deadline = started + Duration::from_secs(6);
    let open = slow
        .into_iter()
        .map(|s| closed_by(s, deadline))
        .filter(|closed| !closed)
        .count();
    assert_eq!(
        open,
        0,
        "{open} of 200 half-sent requests still open after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() >= Duration::from_secs(1), "closed before the timeout");

    // The server still serves.
    let (status, _) = request(
        &addr,
        &format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200);
}

#[test]
fn a_request_over_the_time_limit_gets_a_503_problem() {
    let server = Server::start_with(&[("COFFER_REQUEST_TIMEOUT_SECS", "1")]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    // The head is complete; the body it announces never comes.
    let asked = Instant::now();
    let (status, body) = request(
        &addr,
        &format!(
            "POST /oauth/token HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type="
        ),
    );
    assert_eq!(status, 503, "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        asked.elapsed()
    );
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["type"], "urn:coffer:problem:request-timeout", "{problem}");
    assert_eq!(problem["status"], 503);
}

#[test]
fn connections_over_the_limit_wait_until_one_closes() {
    let server = Server::start_with(&[
        ("COFFER_MAX_CONNECTIONS", "2"),
        ("COFFER_HEADER_READ_TIMEOUT_SECS", "30"),
    ]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let hold: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(&addr).unwrap();
            // A complete request on a keep-alive connection: it stays open.
            write!(stream, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // A third connection is not served while both are open …
    let mut third = TcpStream::connect(&addr).unwrap();
    write!(
        third,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    third.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    let mut buf = [0u8; 256];
    let err = third.read(&mut buf).expect_err("served beyond the connection limit");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    // … and is once one of them closes.
    drop(hold);
    third.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut response = String::new();
    third.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}
