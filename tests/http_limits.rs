//! HTTP guard rails before any handler runs: too many header fields or too large a request
//! head get 431, a request head trickled slower than `http.header_read_timeout` loses its
//! connection, a request body over `http.max_request_body` gets 413, and the gateway keeps
//! serving ordinary requests throughout.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// Send `head` (and `body`) on a fresh connection; the status code of the answer.
fn status_of(addr: SocketAddr, head: &str, body: &[u8]) -> u16 {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // the server may answer (and close) before reading everything: ignore write errors
    let _ = tcp.write_all(head.as_bytes());
    let _ = tcp.write_all(body);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&answer);
    line.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {line:?}"))
}

fn get(extra: &str) -> String {
    format!("GET /healthz HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n")
}

#[test]
fn header_limits_head_timeout_and_body_limit() {
    let gw = Gateway::start_with_env(&[
        ("TSUNAGI_HTTP__MAX_HEADERS", "40"),
        ("TSUNAGI_HTTP__MAX_HEADER_BYTES", "16KiB"),
        ("TSUNAGI_HTTP__HEADER_READ_TIMEOUT", "1s"),
        ("TSUNAGI_HTTP__MAX_REQUEST_BODY", "64KiB"),
    ]);
    let addr = gw.http;
    assert_eq!(status_of(addr, &get(""), b""), 200);

    let fields = |n: usize| (0..n).map(|i| format!("X-F{i}: v\r\n")).collect::<String>();
    assert_eq!(status_of(addr, &get(&fields(30)), b""), 200, "30 fields");
    assert_eq!(status_of(addr, &get(&fields(60)), b""), 431, "60 fields");

    let token = "a".repeat(8 * 1024);
    assert_eq!(
        status_of(
            addr,
            &get(&format!("Authorization: Bearer {token}\r\n")),
            b""
        ),
        200,
        "a request head with an 8 KiB bearer token fits"
    );
    let huge = "a".repeat(40 * 1024);
    assert_eq!(
        status_of(addr, &get(&format!("X-Big: {huge}\r\n")), b""),
        431,
        "40 KiB head"
    );

    // A client that sends half a request head and stalls is cut off.
    let mut slow = TcpStream::connect(addr).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let result = slow.read(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(15),
        "a stalled request head kept its connection for {waited:?} ({result:?})"
    );

    let body = vec![b'x'; 100 * 1024];
    let post = format!(
        "POST /admin/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    assert_eq!(status_of(addr, &post, &body), 413);
    assert_eq!(status_of(addr, &get(""), b""), 200, "still serving");
}
