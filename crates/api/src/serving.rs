//! The HTTP server loop: hyper's HTTP/1 over a TCP listener, with time limits, so that no
//! client can hold a connection: headers (of the first request, and of the next one on a
//! kept-alive connection) must arrive within [`HEADER_TIMEOUT`], a body within
//! [`BODY_TIMEOUT`] (answered 408 otherwise, see `read_body`), and on shutdown the
//! connections in flight get [`DRAIN_TIMEOUT`] to finish before they are closed. At most
//! [`MAX_CONNECTIONS`] are served at once; more wait in the listen backlog, so a flood of
//! connections cannot exhaust the process's file descriptors or memory.
//!
//! `axum::serve` takes none of these limits, which is why the loop is here: each connection
//! is hyper's, configured, and watched for a graceful shutdown.
//!
//! An answer given without reading the request's whole body (a refusal from the headers: no
//! token, a declared length over the limit, a content type not taken) says
//! `Connection: close`. hyper closes such a connection, as the unread rest of the body
//! stands between it and the next request; without the header a client would keep the
//! connection for its next request and see it fail.
//!
//! HTTP that hyper cannot parse (a malformed request line or header, a head past
//! [`MAX_HEADER_BYTES`], more than 100 headers, a URI past 64 KiB) never reaches the router: hyper answers it
//! itself with a bodiless 400, 431 or 414 and closes, and offers no hook to shape that
//! answer (hyper 1.x writes it from `Conn::on_parse_error`, a head and no body). So the
//! connection's socket is wrapped ([`ProblemAnswers`]): when hyper writes one of those
//! answers, the same status goes out as a problem instead. Nothing else hyper writes is
//! touched: the router never answers a 4xx without a problem body, so a bodiless 400, 414
//! or 431 can only be hyper's own.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use hyper::body::{Body as _, Frame, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

/// How long a client may take to send a request's headers, or to start the next request
/// on a kept-alive connection.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the requests in flight (and live streams) get to finish once the server stops.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once (the default file descriptor limit of a process is often
/// 1,024; the log, the store and Kafka need some of them too).
pub const MAX_CONNECTIONS: usize = 768;

/// The largest request head (request line and headers) read, in bytes; a larger one is 431.
/// Without it hyper's limit is its read buffer's (about 400 KiB), which a head of 500 KB
/// passes or not depending on how the socket's reads fall.
pub const MAX_HEADER_BYTES: usize = 128 * 1024;

/// The limits of [`serve_with`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub headers: Duration,
    pub drain: Duration,
    pub connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            headers: HEADER_TIMEOUT,
            drain: DRAIN_TIMEOUT,
            connections: MAX_CONNECTIONS,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes (whatever its output: a oneshot
/// receiver stops it when told, or when its sender is dropped), then stops accepting, lets the
/// connections in flight finish for up to [`DRAIN_TIMEOUT`] and closes the rest.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future,
) -> std::io::Result<()> {
    serve_with(listener, app, shutdown, Limits::default()).await
}

/// [`serve`] with other limits (tests use small ones).
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future,
    limits: Limits,
) -> std::io::Result<()> {
    let app = app.layer(axum::middleware::from_fn(close_unless_body_read));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections));
    let graceful = GracefulShutdown::new();
    let mut connection = http1::Builder::new();
    connection
        .timer(TokioTimer::new())
        .header_read_timeout(limits.headers)
        .max_header_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        // A slot first: with every slot taken, new connections wait in the backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Out of file descriptors, say: wait a little rather than spin.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(app.clone());
                let stream = ProblemAnswers::new(stream);
                let served = connection.serve_connection(TokioIo::new(stream), service);
                let watched = graceful.watch(served);
                tokio::spawn(async move {
                    // A client that goes away or times out ends its connection; nothing
                    // to report. Its slot is free again once it is done.
                    let _ = watched.await;
                    drop(slot);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain) => {
            tracing::warn!(
                seconds = limits.drain.as_secs_f64(),
                "connections still open after the drain time are closed"
            );
        }
    }
    Ok(())
}

/// A request body that notes when it has been read to its end.
struct Watched {
    inner: axum::body::Body,
    read_to_end: Arc<AtomicBool>,
}

impl hyper::body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.read_to_end.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: an answer to a request whose body was not read to its end says
/// `Connection: close` (see the module's comment).
async fn close_unless_body_read(request: Request, next: Next) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let read_to_end = Arc::new(AtomicBool::new(false));
    let (parts, body) = request.into_parts();
    let watched = Watched {
        inner: body,
        read_to_end: read_to_end.clone(),
    };
    let request = Request::from_parts(parts, axum::body::Body::new(watched));
    let mut response = next.run(request).await;
    if !read_to_end.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A connection's socket that turns hyper's own answers to HTTP it cannot parse (a head
/// with `content-length: 0` and status 400, 414 or 431, written before any request of
/// the connection reached the router or after the last was answered) into problems: see
/// the module's comment. Reads pass through untouched.
struct ProblemAnswers<S> {
    inner: S,
    /// A problem being written in place of hyper's answer: its bytes, how many went out,
    /// and how many of hyper's bytes to report written once they all did.
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl<S> ProblemAnswers<S> {
    fn new(inner: S) -> Self {
        ProblemAnswers {
            inner,
            replacing: None,
        }
    }
}

/// hyper's automatic answers: its status line, and what the problem says.
const AUTOMATIC_ANSWERS: [(&str, u16, &str, &str); 3] = [
    (
        "HTTP/1.1 400 Bad Request\r\n",
        400,
        "/problems/invalid-request",
        "the request is not HTTP/1.1 this server can read (a malformed request line or header)",
    ),
    (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n",
        431,
        "/problems/http-431",
        // In step with MAX_HEADER_BYTES.
        "the request's head is larger than this server reads (128 KiB of request line and headers, at most 100 headers)",
    ),
    (
        "HTTP/1.1 414 URI Too Long\r\n",
        414,
        "/problems/http-414",
        "the request's URI is longer than this server reads (64 KiB)",
    ),
];

/// The problem to write instead of `written`, when `written` is one of hyper's bodiless
/// automatic answers (a whole head and nothing after it); `None` for anything else.
fn problem_for(written: &[u8]) -> Option<Vec<u8>> {
    let (status_line, status, kind, detail) = AUTOMATIC_ANSWERS
        .iter()
        .find(|(line, ..)| written.starts_with(line.as_bytes()))?;
    let head = std::str::from_utf8(written).ok()?;
    let fields = head.strip_prefix(status_line)?.strip_suffix("\r\n\r\n")?;
    let mut bodiless = false;
    let mut kept = Vec::new();
    for field in fields.split("\r\n") {
        let (name, value) = field.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" if value.trim() == "0" => bodiless = true,
            "content-length" | "content-type" | "transfer-encoding" => return None,
            "connection" => {}
            _ => kept.push(field),
        }
    }
    if !bodiless {
        return None;
    }
    let title = status_line
        .trim_end()
        .splitn(3, ' ')
        .nth(2)
        .unwrap_or_default();
    let body = serde_json::json!({
        "type": kind,
        "title": title,
        "status": status,
        "detail": detail,
    })
    .to_string();
    let mut answer = format!(
        "{status_line}content-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for field in kept {
        answer.push_str(field);
        answer.push_str("\r\n");
    }
    answer.push_str("\r\n");
    answer.push_str(&body);
    Some(answer.into_bytes())
}

impl<S: AsyncWrite + Unpin> ProblemAnswers<S> {
    /// Writes the problem in place of hyper's answer; once it is all out, reports hyper's
    /// bytes written.
    fn poll_replace(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        while let Some((problem, sent, _)) = &mut self.replacing {
            if *sent == problem.len() {
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &problem[*sent..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *sent += n,
                other => return other,
            }
        }
        let consumed = self.replacing.take().map_or(0, |(_, _, consumed)| consumed);
        Poll::Ready(Ok(consumed))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ProblemAnswers<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ProblemAnswers<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.replacing.is_none() {
            match problem_for(buf) {
                Some(problem) => self.replacing = Some((problem, 0, buf.len())),
                None => return Pin::new(&mut self.inner).poll_write(cx, buf),
            }
        }
        self.poll_replace(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.replacing.is_none() {
            // hyper's automatic answer is a head alone: the first slice, with none after.
            let mut filled = bufs.iter().filter(|b| !b.is_empty());
            let problem = match (filled.next(), filled.next()) {
                (Some(only), None) => problem_for(only).map(|p| (p, only.len())),
                _ => None,
            };
            match problem {
                Some((problem, consumed)) => self.replacing = Some((problem, 0, consumed)),
                None => return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
            }
        }
        self.poll_replace(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyper_s_bodiless_answers_become_problems() {
        let hyper_s = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\ndate: Tue, 01 Dec 2026 13:00:00 GMT\r\n\r\n";
        let problem = String::from_utf8(problem_for(hyper_s).unwrap()).unwrap();
        let (head, body) = problem.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("content-type: application/problem+json\r\n"));
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())));
        assert!(head.contains("date: Tue, 01 Dec 2026 13:00:00 GMT"));
        assert_eq!(head.matches("connection: close").count(), 1);
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["status"], 431);
        assert_eq!(body["title"], "Request Header Fields Too Large");
        // What the router answers is never touched: a problem of its own, a body after the
        // head, another status, a 400 of the router with a body.
        for untouched in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 2\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"{\"HTTP/1.1 400 Bad Request\r\n\"}",
        ] {
            assert!(problem_for(untouched).is_none(), "{untouched:?}");
        }
    }
}
