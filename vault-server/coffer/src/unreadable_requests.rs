//! Problem JSON for requests hyper cannot read. A request line with a raw
//! `"`, `<` or `>` in its URL, a malformed header, a URL or header block over
//! hyper's limits: hyper answers these itself, before any of Coffer's code
//! runs, with a bare status and no body, and closes the connection. The
//! wrapper here sits between hyper and the socket and replaces exactly those
//! answers with an RFC 9457 problem, so every 4xx a client sees explains
//! itself (decision 0015).
//!
//! An answer is replaced only when one write holds nothing but a response
//! head (parsed with `httparse`) whose status is 400, 414 or 431, with
//! `content-length: 0` and no `content-type`. Every answer of Coffer's own
//! routes has a body and a content type, and a body is never written on its
//! own as a bare head, so nothing else is touched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose unreadable-request answers become problem JSON.
pub struct ProblemForUnreadable<S> {
    inner: S,
    /// The replacement being written: the bytes, how many are out, and the
    /// length of the write it stands for.
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl<S> ProblemForUnreadable<S> {
    /// Wraps a connection.
    pub fn new(inner: S) -> Self {
        ProblemForUnreadable { inner, replacing: None }
    }
}

/// The problem that replaces `head`, when `head` is a bare answer of hyper's
/// to a request it could not read.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return None,
    }
    let detail = match response.code? {
        400 => {
            "The request could not be read: its request line or a header is malformed. In a URL, \
             characters such as `\"`, `<`, `>`, `{`, `}` and spaces must be percent-encoded \
             (`%22`, `%3C`, `%3E`, `%7B`, `%7D`, `%20`)."
        }
        414 => "The request's URL is too long.",
        431 => "The request's headers are too large.",
        _ => return None,
    };
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if header("content-type").is_some() || header("content-length") != Some(b"0".as_slice()) {
        return None;
    }
    let status = response.code?;
    let reason = response.reason.unwrap_or_default();
    let body = json!({
        "type": "urn:coffer:problem:unreadable-request",
        "title": "The request could not be read",
        "status": status,
        "detail": detail,
    })
    .to_string();
    let mut answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(date) = header("date").and_then(|d| std::str::from_utf8(d).ok()) {
        answer.push_str(&format!("date: {date}\r\n"));
    }
    answer.push_str("\r\n");
    answer.push_str(&body);
    Some(answer.into_bytes())
}

impl<S: AsyncRead + Unpin> AsyncRead for ProblemForUnreadable<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ProblemForUnreadable<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none() {
            match replacement(buf) {
                Some(answer) => this.replacing = Some((answer, 0, buf.len())),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        // Write the whole replacement, then report the original write done.
        while let Some((answer, written, original)) = &mut this.replacing {
            if *written == answer.len() {
                let original = *original;
                this.replacing = None;
                return Poll::Ready(Ok(original));
            }
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &answer[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        unreachable!("the loop returns once the replacement is written")
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // A bare head is one buffer; anything else goes through as it is.
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
        let this = self.get_mut();
        if this.replacing.is_some() || bufs.iter().filter(|b| !b.is_empty()).count() == 1 {
            return Pin::new(this).poll_write(cx, first);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_answers_to_unreadable_requests_are_replaced() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Fri, 04 Dec 2026 03:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(replacement(bare).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("content-type: application/problem+json"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], 400);
        assert_eq!(problem["type"], "urn:coffer:problem:unreadable-request");
        assert!(replacement(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n").is_some());
        for other in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 2\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"{\"rows\": []}",
        ] {
            assert!(replacement(other).is_none(), "{}", String::from_utf8_lossy(other));
        }
    }
}
