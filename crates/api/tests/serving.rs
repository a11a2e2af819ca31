//! The server loop's limits: a client that stalls its headers or idles on a kept-alive
//! connection is disconnected, a stop does not wait for stalled clients beyond the drain
//! time, connections beyond the limit wait their turn, an answer that leaves a body
//! unread closes its connection, saying so, and HTTP that does not parse is answered with
//! a problem too.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use omnilog_api::serving::{Limits, serve_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMITS: Limits = Limits {
    headers: Duration::from_millis(300),
    drain: Duration::from_millis(500),
    connections: 64,
};

/// A server of one route on a free loopback port: its address, what stops it, and its task.
async fn start(
    limits: Limits,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/healthz", get(|| async { "ok\n" }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_with(listener, app, stopped, limits));
    (addr, stop, server)
}

/// Reads until the server closes the connection; the bytes read. Bounded: fails after 5 s.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut read = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut read))
        .await
        .expect("the server closed the connection within 5 s")
        .expect("read");
    read
}

#[tokio::test]
async fn stalled_headers_and_idle_connections_are_closed_and_a_stop_does_not_wait_for_them() {
    let (addr, stop, server) = start(LIMITS).await;

    // Headers that never end.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    until_closed(&mut stalled).await;
    assert!(started.elapsed() >= Duration::from_millis(250));

    // A kept-alive connection left idle after its answer.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut idle).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));

    // A stop with a client in the middle of its headers: the server is done within the
    // drain time, whatever that client does.
    let mut mid_request = TcpStream::connect(addr).await.unwrap();
    mid_request.write_all(b"GET /hea").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stopping = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stopped within 5 s")
        .unwrap()
        .unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(2));
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_is_done() {
    let (addr, stop, server) = start(Limits {
        headers: Duration::from_secs(5),
        drain: Duration::from_millis(500),
        connections: 1,
    })
    .await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(request).await.unwrap();
    let mut answer = [0u8; 12];
    first.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    // The first connection is kept alive and holds the only slot: the second waits.
    let mut second = TcpStream::connect(addr).await.unwrap();
    second.write_all(request).await.unwrap();
    let waited =
        tokio::time::timeout(Duration::from_millis(500), second.read_exact(&mut answer)).await;
    assert!(waited.is_err(), "answered beyond the connection limit");
    drop(first);
    tokio::time::timeout(Duration::from_secs(5), second.read_exact(&mut answer))
        .await
        .expect("answered once the first connection closed")
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    drop(second);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("stopped")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_answer_that_leaves_the_body_unread_says_the_connection_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route(
            "/refuses",
            axum::routing::post(|| async { (axum::http::StatusCode::UNAUTHORIZED, "no") }),
        )
        .route(
            "/reads",
            axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_with(listener, app, stopped, LIMITS));
    let head_of =
        |path: &str| format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    // Refused unread: the answer says close, and the server closes.
    let mut refused = TcpStream::connect(addr).await.unwrap();
    refused
        .write_all(head_of("/refuses").as_bytes())
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&until_closed(&mut refused).await).to_lowercase();
    assert!(answer.starts_with("http/1.1 401"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    // Read to its end: the connection is kept for the next request.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    for _ in 0..2 {
        kept.write_all(head_of("/reads").as_bytes()).await.unwrap();
        let mut answer = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), kept.read(&mut answer))
            .await
            .expect("answered within 5 s")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).to_lowercase();
        assert!(answer.starts_with("http/1.1 200"), "{answer}");
        assert!(!answer.contains("connection: close"), "{answer}");
    }
    drop(kept);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("stopped")
        .unwrap()
        .unwrap();
}

/// HTTP that hyper cannot parse never reaches the router; hyper's own answer (a bodiless
/// 400, 431 or 414) goes out as a problem of the same status, and the connection closes.
#[tokio::test]
async fn http_that_does_not_parse_is_answered_with_a_problem_and_closed() {
    let (addr, stop, server) = start(LIMITS).await;
    let many_headers: String = (0..120).map(|n| format!("X-H{n}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "a request line of bad bytes",
            b"GET /v1/\xff\x00 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "not HTTP (a TLS hello)",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a header without a colon",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nnonsense\r\n\r\n".to_vec(),
            400,
        ),
        (
            "two content lengths",
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n[]"
                .to_vec(),
            400,
        ),
        (
            "a header of 500 KB",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(500_000)
            )
            .into_bytes(),
            431,
        ),
        (
            "a head just past 128 KiB",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(128 * 1024)
            )
            .into_bytes(),
            431,
        ),
        (
            "120 headers",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(),
            431,
        ),
        (
            "a URI of 70 KB",
            format!(
                "GET /healthz?{} HTTP/1.1\r\nHost: x\r\n\r\n",
                "a".repeat(70_000)
            )
            .into_bytes(),
            414,
        ),
    ];
    for (what, request, status) in cases {
        let stream = TcpStream::connect(addr).await.unwrap();
        // The server answers and closes before it has read everything of a large head:
        // the answer is read while the request goes out.
        let (mut reader, mut writer) = stream.into_split();
        let writing = tokio::spawn(async move {
            let _ = writer.write_all(&request).await;
            writer
        });
        let mut read = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut read))
            .await
            .expect("the server closed the connection within 5 s")
            .expect("read");
        drop(writing.await);
        let answer = String::from_utf8_lossy(&read).into_owned();
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{what}: {answer:?}"));
        let head = head.to_ascii_lowercase();
        assert!(
            head.starts_with(&format!("http/1.1 {status} ")),
            "{what}: {head}"
        );
        assert!(
            head.contains("content-type: application/problem+json\r\n"),
            "{what}: {head}"
        );
        assert!(head.contains("connection: close"), "{what}: {head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{what}: {head}"
        );
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], status, "{what}: {problem}");
        assert!(
            problem["type"].as_str().unwrap().starts_with("/problems/"),
            "{what}: {problem}"
        );
        assert!(!problem["detail"].as_str().unwrap().is_empty(), "{what}");
    }
    // And the server goes on answering.
    let mut fine = TcpStream::connect(addr).await.unwrap();
    fine.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&until_closed(&mut fine).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("stopped")
        .unwrap()
        .unwrap();
}
