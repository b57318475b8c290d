//! Slow clients (issue 20): connections that send their request a byte at a time (a
//! slowloris), or a body slower than the request timeout, are closed by the server, and
//! cannot keep a well-behaved client out; the connection cap holds.

use crate::common::{DataDirs, Router};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `host:port` of the router.
fn authority(r: &Router) -> String {
    r.base.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (or fails it); what it sent before. Panics
/// when the connection is still open after `limit`.
fn read_until_closed(mut s: &TcpStream, limit: Duration, what: &str) -> String {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("{what}: the server kept the connection open for {limit:?}")
            }
            // Reset by the server: closed as well.
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_and_cannot_lock_others_out() {
    let dirs = DataDirs::new();
    let r = Router::start(
        &dirs,
        &[
            "--max-connections",
            "16",
            "--header-read-timeout-secs",
            "2",
            "--request-timeout-secs",
            "3",
        ],
    );
    r.create("c", json!({"vectors": {"size": 4, "distance": "Dot"}}))
        .await;
    let addr = authority(&r);
    // Three times the cap, each with half a request head, and never the rest.
    let slow: Vec<TcpStream> = (0..48)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"POST /collections/c/points/count HTTP/1.1\r\nHost: x\r\nContent-")
                .unwrap();
            s
        })
        .collect();
    // A client that behaves gets its answer once the server has closed the slow ones ahead
    // of it (the cap makes it wait in the backlog, not fail).
    let fine = r
        .request(reqwest::Method::GET, "/collections/c")
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("a well-behaved client is served");
    assert_eq!(fine.status(), reqwest::StatusCode::OK);
    // Every slow connection is closed by the server, none answered as if complete.
    let closed = tokio::task::spawn_blocking(move || {
        for (i, s) in slow.iter().enumerate() {
            let got = read_until_closed(s, Duration::from_secs(60), &format!("slowloris {i}"));
            assert!(
                got.is_empty() || got.starts_with("HTTP/1.1 408"),
                "slowloris {i} got {got:?}"
            );
        }
    });
    closed.await.unwrap();

    // A body trickled in slower than the request timeout: 408, and the connection closed.
    let trickle = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(
            b"POST /collections/c/points/count HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        )
        .unwrap();
        // Up to 20 s of one byte every 200 ms; the server answers (and stops reading) at 3 s.
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(200));
            if s.write_all(b" ").is_err() {
                break;
            }
            s.set_nonblocking(true).unwrap();
            let mut peek = [0u8; 1];
            let answered = matches!(s.peek(&mut peek), Ok(n) if n > 0);
            s.set_nonblocking(false).unwrap();
            if answered {
                break;
            }
        }
        read_until_closed(&s, Duration::from_secs(30), "trickled body")
    })
    .await
    .unwrap();
    assert!(
        trickle.starts_with("HTTP/1.1 408"),
        "a trickled body gets 408: {trickle:?}"
    );
    assert!(
        trickle.contains("\"status\""),
        "Qdrant's error shape: {trickle}"
    );

    // Still serving.
    r.get("/collections/c").await;
}

#[test]
fn a_connection_cap_beyond_the_open_file_limit_is_refused() {
    // The router inherits this process's limit; one of a million descriptors or more would
    // let it start and serve (nothing to check here then).
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: Option<u64> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok());
    if soft.is_none_or(|n| n >= 1_000_000) {
        eprintln!("SKIPPED: open-file limit {soft:?}");
        return;
    }
    let dirs = DataDirs::new();
    let out = Router::command(&dirs)
        .args(["--max-connections", "999999"])
        .output()
        .expect("run the router");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_connections 999999") && err.contains("ulimit -n"),
        "{err}"
    );
}
