//! Slow clients (issue 20): connections that send their request a byte at a time (a
//! slowloris), a body slower than the request timeout, or read none of their answer, are
//! closed by the server, and cannot keep a well-behaved client out; the connection cap holds,
//! and one address cannot take every connection.

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
            // This test is of the global cap: one address may take all of it.
            "--max-connections-per-address",
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

/// A connection from `source` (an address of the loopback network) to `addr`.
async fn connect_from(source: &str, addr: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

/// Sends `GET path` on `s` and reads the whole answer (the request asks the server to close).
async fn get_on(mut s: tokio::net::TcpStream, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut got))
        .await
        .expect("answered within 30 s")
        .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let dirs = DataDirs::new();
    let r = Router::start(
        &dirs,
        &[
            "--max-connections",
            "16",
            "--max-connections-per-address",
            "4",
            "--header-read-timeout-secs",
            "60",
        ],
    );
    let addr = authority(&r);
    // Four connections from 127.0.0.1 held open with half a request head.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-").unwrap();
        slow.push(s);
    }
    // A fifth from the same address is answered 503 at once, in Qdrant's error shape.
    let refused = get_on(connect_from("127.0.0.1", &addr).await, "/").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.to_lowercase().contains("retry-after: 1") && refused.contains("\"status\""),
        "{refused}"
    );
    // Another address is served.
    let other = get_on(connect_from("127.0.0.2", &addr).await, "/").await;
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    // One slow connection gone, its address gets a connection again.
    drop(slow.pop());
    let mut served = String::new();
    for _ in 0..100 {
        served = get_on(connect_from("127.0.0.1", &addr).await, "/").await;
        if served.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_no_answer_is_dropped_after_the_write_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &[]);
    r.create("c", json!({"vectors": {"size": 512, "distance": "Dot"}}))
        .await;
    // An answer of about 10 MB: more than the kernel's buffers of both ends hold.
    for chunk in 0..4u64 {
        let points: Vec<_> = (0..500u64)
            .map(|i| {
                let id = chunk * 500 + i;
                json!({"id": id, "vector": (0..512).map(|d| ((id * 512 + d) % 1000) as f32 * 0.001 + 0.1234567).collect::<Vec<_>>()})
            })
            .collect();
        r.upsert("c", json!({"points": points})).await;
    }
    drop(r);
    // One connection at a time, so a client that never reads would hold the only one.
    let r = Router::start(
        &dirs,
        &[
            "--max-connections",
            "1",
            "--max-connections-per-address",
            "1",
            "--write-timeout-secs",
            "2",
        ],
    );
    let addr = authority(&r);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(addr.parse().unwrap()).await.unwrap();
    let body = r#"{"limit": 2000, "with_vector": true, "with_payload": false}"#;
    stuck
        .write_all(
            format!(
                "POST /collections/c/points/scroll HTTP/1.1\r\nHost: x\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // Another client waits behind it for the only connection, and is served once the server
    // gives up on the one that does not read.
    let waited = std::time::Instant::now();
    let other = get_on(connect_from("127.0.0.2", &addr).await, "/").await;
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    assert!(
        waited.elapsed() >= Duration::from_secs(1),
        "served before the stuck connection was dropped: the answer fitted the buffers"
    );
    // The stuck client got part of its answer, then the connection was closed.
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stuck.read_to_end(&mut got)).await;
    let head = String::from_utf8_lossy(&got[..got.len().min(12)]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let split = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the head arrived");
    let head = String::from_utf8_lossy(&got[..split]).to_lowercase();
    let body = got.len() - split - 4;
    match head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        Some(n) => assert!(
            body < n.trim().parse::<usize>().unwrap(),
            "the whole answer arrived ({body} bytes): the server never stalled"
        ),
        None => assert!(
            !got.ends_with(b"0\r\n\r\n"),
            "the whole chunked answer arrived ({body} bytes): the server never stalled"
        ),
    }
}

/// The open-file limits (soft, hard) of `/proc/<pid>/limits`; `None` for "unlimited".
fn open_file_limits(pid: &str) -> (Option<u64>, Option<u64>) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("an open-file line");
    let mut fields = line.split_whitespace().skip(3).map(|n| n.parse().ok());
    (fields.next().flatten(), fields.next().flatten())
}

/// The router's command on `dirs` under `prlimit --nofile=soft:hard` (util-linux, essential
/// in Debian), with the environment `Router::command` sets.
fn under_open_file_limit(dirs: &DataDirs, soft: u64, hard: u64) -> std::process::Command {
    let found = std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "these tests run the router under prlimit (util-linux): install it"
    );
    let router = Router::command(dirs);
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg(format!("--nofile={soft}:{hard}"))
        .arg(router.get_program())
        .args(router.get_args())
        .stdin(std::process::Stdio::null());
    for (k, v) in router.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}

/// A hard limit to run the router under: this process's, at most 4,096.
fn hard_limit_for_tests() -> u64 {
    let hard = open_file_limits("self").1.unwrap_or(u64::MAX).min(4096);
    assert!(
        hard >= 1024,
        "a hard open-file limit under 1,024 here ({hard}): raise it to run these tests"
    );
    hard
}

/// With the hard limit as low as the soft one, a cap the limit cannot hold is refused at
/// start, naming the limit.
#[test]
fn a_connection_cap_beyond_the_open_file_limit_is_refused() {
    let hard = hard_limit_for_tests();
    let dirs = DataDirs::new();
    let out = under_open_file_limit(&dirs, hard, hard)
        .args(["--max-connections", &(hard - 100).to_string()])
        .output()
        .expect("run the router");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("max_connections {}", hard - 100)) && err.contains("ulimit -n"),
        "{err}"
    );
}

/// A low soft limit under a higher hard one is raised at start (as distributions ship 1,024
/// soft): a cap that the soft limit could not hold is served.
#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let hard = hard_limit_for_tests();
    let dirs = DataDirs::new();
    let mut cmd = under_open_file_limit(&dirs, 300, hard);
    cmd.args(["--max-connections", &(hard - 300).to_string()]);
    let r = Router::spawn(cmd, &dirs.log());
    assert_eq!(
        open_file_limits(&r.pid().to_string()),
        (Some(hard), Some(hard))
    );
    let mut s = TcpStream::connect(authority(&r)).expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let answer = read_until_closed(&s, Duration::from_secs(10), "health");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// The gRPC port shares the connection slots: connections to it that never send HTTP/2's
/// preface are closed after the header-read time limit, so they cannot keep REST's clients
/// (or gRPC's) out, and a gRPC client that behaves is served too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_grpc_connections_are_closed_and_cannot_lock_rest_out() {
    let dirs = DataDirs::new();
    let r = Router::start(
        &dirs,
        &[
            "--max-connections",
            "8",
            "--max-connections-per-address",
            "8",
            "--header-read-timeout-secs",
            "2",
        ],
    );
    r.create("g", json!({"vectors": {"size": 4, "distance": "Dot"}}))
        .await;
    let grpc_addr = r.grpc.trim_start_matches("http://").to_string();
    // Twice the cap, connected to the gRPC port, silent; one sends half a preface.
    let silent: Vec<TcpStream> = (0..16)
        .map(|i| {
            let mut s = TcpStream::connect(&grpc_addr).unwrap();
            if i == 0 {
                s.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
            }
            s
        })
        .collect();
    let fine = r
        .request(reqwest::Method::GET, "/collections/g")
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("a REST client is served once the silent gRPC connections are closed");
    assert_eq!(fine.status(), reqwest::StatusCode::OK);
    let closed = tokio::task::spawn_blocking(move || {
        for (i, s) in silent.iter().enumerate() {
            // The server's own HTTP/2 settings may come first; then the close.
            read_until_closed(s, Duration::from_secs(60), &format!("silent gRPC {i}"));
        }
    });
    closed.await.unwrap();
    let grpc = qdrant_client::Qdrant::from_url(&r.grpc)
        .skip_compatibility_check()
        .build()
        .unwrap();
    assert!(grpc
        .collection_exists("g")
        .await
        .expect("a gRPC client is served"));
}
