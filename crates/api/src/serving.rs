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

use std::future::Future;
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
