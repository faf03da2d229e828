//! Requests hyper cannot read (a raw `"` in the URL, a header block over
//! the limit) are answered with problem JSON, not a bare status, and the
//! server goes on serving.

use serde_json::Value;

use crate::common::{Server, raw_request};

/// `(status, problem)` of a raw request to `server`.
fn send(server: &Server, head: &str) -> (u16, Value) {
    let (status, body) = raw_request(server.base.trim_start_matches("http://"), head);
    let problem = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{status} answered {body:?}, not JSON: {e}"));
    (status, problem)
}

#[test]
fn a_request_line_hyper_refuses_is_answered_with_a_problem() {
    let server = Server::start();
    // Typed as a shell user would, quotes unencoded.
    let (status, problem) = send(
        &server,
        "GET /v1/tables/contacts.people/rows?given_name=in.(a,b,\"c,d\") HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(status, 400);
    assert_eq!(problem["type"], "urn:coffer:problem:unreadable-request", "{problem}");
    assert_eq!(problem["status"], 400);
    assert!(problem["detail"].as_str().unwrap().contains("%22"), "{problem}");

    let many_headers: String = (0..200).map(|i| format!("x-filler-{i}: {i}\r\n")).collect();
    let (status, problem) = send(
        &server,
        &format!("GET /v1/tables HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n"),
    );
    assert_eq!(status, 431);
    assert_eq!(problem["type"], "urn:coffer:problem:unreadable-request", "{problem}");

    // The same request, encoded, reaches the data API (401: no token).
    let (status, problem) = send(
        &server,
        "GET /v1/tables/contacts.people/rows?given_name=in.(a,b,%22c,d%22) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        (status, problem["type"].as_str()),
        (401, Some("urn:coffer:problem:invalid-token"))
    );
}
