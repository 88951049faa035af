//! The limits connections are held to ([`ServerLimits`]): time to send a request head, idle
//! time, how many connections at once. Over raw sockets, since HTTP clients hide exactly what
//! these tests need (a request head sent in pieces, a connection left open and quiet).
//!
//! Timings are loose on purpose: a test waits at most [`PATIENCE`] for the server to act, and
//! only checks that it did not act before the limit.

use ironchart_records::test_support::operator;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ironchart_records::{DatabaseConfig, Records};
use ironchart_web::ServerLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{DATA_ACTIONS, Server, security};

/// The longest a test waits for the server to do what it should.
const PATIENCE: Duration = Duration::from_secs(30);

/// A limit that is not under test: longer than [`PATIENCE`], so that it cannot be what acts.
const NOT_TESTED: Duration = Duration::from_secs(120);

fn limits(header: Duration, idle: Duration, max_connections: u32) -> ServerLimits {
    ServerLimits {
        header_read_timeout: header,
        idle_timeout: idle,
        max_connections,
        shutdown_grace: Duration::from_secs(1),
    }
}

/// A server on SQLite held to `limits`, answering once this returns; and a system token.
struct Limited {
    addr: SocketAddr,
    token: String,
    _records: Records,
    _dir: tempfile::TempDir,
}

async fn start(limits: ServerLimits) -> Limited {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = Records::open(
        &DatabaseConfig::Sqlite(dir.path().join("t.sqlite3")),
        security(dir.path(), false),
    )
    .await
    .expect("open sqlite");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config = ironchart_web::WebConfig::for_base(&format!("http://{addr}"));
    config.rate_limit = None;
    let app = ironchart_web::router(records.clone(), config);
    tokio::spawn(ironchart_web::serve(
        listener,
        app,
        limits,
        std::future::pending(),
    ));
    let token = records
        .issue_system_token(&operator(), Duration::from_secs(3600))
        .await
        .expect("token");
    // Poll /healthz, each time on a connection of its own that the server closes, so that
    // none is left holding a place under the cap.
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(mut s) = TcpStream::connect(addr).await {
            let asked = s
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .await;
            if asked.is_ok()
                && read_response(&mut s)
                    .await
                    .is_some_and(|r| r.contains(" 200 "))
            {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the server never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Limited {
        addr,
        token,
        _records: records,
        _dir: dir,
    }
}

/// Reads one HTTP/1.1 response (head and a `Content-Length` body); `None` if the connection
/// ends first.
async fn read_response(s: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return Some(String::from_utf8_lossy(&got).into_owned());
            }
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `GET /healthz` on a kept-alive connection and checks the answer.
async fn healthz(s: &mut TcpStream) {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("send");
    let response = tokio::time::timeout(PATIENCE, read_response(s))
        .await
        .expect("an answer in time")
        .expect("an answer");
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
}

/// Reads (and drops) whatever comes until the server closes the connection; how long that
/// took, or `None` if it stayed open for [`PATIENCE`].
async fn closed_after(s: &mut TcpStream) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let until_closed = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(PATIENCE, until_closed)
        .await
        .ok()
        .map(|()| start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_must_arrive_in_time() {
    let header = Duration::from_secs(1);
    let server = start(limits(header, NOT_TESTED, 64)).await;

    // Half a request head, then nothing.
    let mut stalled = TcpStream::connect(server.addr).await.expect("connect");
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .expect("send");
    // Meanwhile others are served.
    let mut other = TcpStream::connect(server.addr).await.expect("connect");
    healthz(&mut other).await;
    let after = closed_after(&mut stalled)
        .await
        .expect("a stalled request head is cut off");
    assert!(after >= header / 2, "cut off too soon: {after:?}");

    // Nothing at all.
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    assert!(
        closed_after(&mut silent).await.is_some(),
        "a silent connection is closed"
    );

    // The next request on a kept-alive connection is held to the same limit.
    let mut kept = TcpStream::connect(server.addr).await.expect("connect");
    healthz(&mut kept).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .expect("send");
    assert!(
        closed_after(&mut kept).await.is_some(),
        "a stalled second request head is cut off"
    );

    // A head dripped a byte at a time, never finished, is cut off too.
    let mut drip = TcpStream::connect(server.addr).await.expect("connect");
    let start = Instant::now();
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: "
        .iter()
        .chain(std::iter::repeat(&b'a'));
    let mut buf = [0u8; 1024];
    let cut_off = loop {
        if start.elapsed() > PATIENCE {
            break false;
        }
        tokio::select! {
            read = drip.read(&mut buf) => {
                if matches!(read, Ok(0) | Err(_)) {
                    break true;
                }
            }
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                let byte = head.next().copied().unwrap_or(b'a');
                if drip.write_all(&[byte]).await.is_err() {
                    break true;
                }
            }
        }
    };
    assert!(cut_off, "a request head sent a byte at a time is cut off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed() {
    let idle = Duration::from_secs(1);
    let server = start(limits(NOT_TESTED, idle, 64)).await;

    // HTTP/1.1 keep-alive, after a response.
    let mut h1 = TcpStream::connect(server.addr).await.expect("connect");
    healthz(&mut h1).await;
    let after = closed_after(&mut h1)
        .await
        .expect("an idle HTTP/1.1 connection is closed");
    assert!(after >= idle / 2, "closed too soon: {after:?}");

    // HTTP/2 (prior knowledge): the preface and empty SETTINGS, then silence.
    let mut h2 = TcpStream::connect(server.addr).await.expect("connect");
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("send");
    let mut frame = [0u8; 9];
    tokio::time::timeout(PATIENCE, h2.read_exact(&mut frame))
        .await
        .expect("an answer in time")
        .expect("the server's SETTINGS");
    assert_eq!(frame[3], 0x04, "the server speaks HTTP/2: {frame:?}");
    assert!(
        closed_after(&mut h2).await.is_some(),
        "an idle HTTP/2 connection is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_is_idle_only_when_it_stops() {
    let idle = Duration::from_secs(2);
    let server = start(limits(NOT_TESTED, idle, 64)).await;
    let patient = br#"{"resourceType":"Patient","name":[{"family":"Slowpost","given":["Ada"]}],"gender":"female"}"#;
    let head = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/fhir+json\r\nContent-Length: {}\r\n\r\n",
        server.token,
        patient.len()
    );

    // A body sent in pieces over longer than the idle timeout, never quiet for that long.
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    slow.write_all(head.as_bytes()).await.expect("send");
    let pieces = patient.chunks(patient.len().div_ceil(10));
    let start = Instant::now();
    for piece in pieces {
        tokio::time::sleep(Duration::from_millis(300)).await;
        slow.write_all(piece).await.expect("send a piece");
    }
    let response = tokio::time::timeout(PATIENCE, read_response(&mut slow))
        .await
        .expect("an answer in time")
        .expect("a body that keeps coming is not cut off");
    assert!(response.starts_with("HTTP/1.1 201 "), "{response}");
    assert!(
        start.elapsed() > idle,
        "the body took longer than the idle timeout"
    );

    // A body that stops half way.
    let mut stalled = TcpStream::connect(server.addr).await.expect("connect");
    stalled.write_all(head.as_bytes()).await.expect("send");
    stalled
        .write_all(&patient[..patient.len() / 2])
        .await
        .expect("send");
    let after = closed_after(&mut stalled)
        .await
        .expect("a stalled request body is cut off");
    assert!(after >= idle / 2, "cut off too soon: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait() {
    let server = start(limits(NOT_TESTED, NOT_TESTED, 2)).await;
    let mut first = TcpStream::connect(server.addr).await.expect("connect");
    healthz(&mut first).await;
    let mut second = TcpStream::connect(server.addr).await.expect("connect");
    healthz(&mut second).await;

    // A third connection gets no answer while both are open ...
    let mut third = TcpStream::connect(server.addr).await.expect("connect");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("send");
    let early = tokio::time::timeout(Duration::from_secs(1), read_response(&mut third)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");

    // ... and is served once one closes.
    drop(first);
    let response = tokio::time::timeout(PATIENCE, read_response(&mut third))
        .await
        .expect("served once a place is free")
        .expect("an answer");
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    healthz(&mut second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_the_client_address() {
    let server =
        Server::sqlite_with_limits(limits(Duration::from_secs(5), Duration::from_secs(5), 8)).await;
    let head = server.audit_head().await;
    let search = server.get("Patient").await;
    assert_eq!(search.status, reqwest::StatusCode::OK, "{}", search.text);
    let rows = server.audit_after("system", head).await;
    let search = rows
        .iter()
        .find(|r| r.action == "search")
        .unwrap_or_else(|| panic!("a search entry among {} of {DATA_ACTIONS:?}", rows.len()));
    assert_eq!(search.source.as_deref(), Some("127.0.0.1"));
}
