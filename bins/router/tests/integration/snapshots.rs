//! Snapshots: create, list, download (the bytes of the file), recover after changes (by
//! `file://` path and by the router's own download URL), delete.

use crate::common::{ids, DataDirs, Rng, Router};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_round_trip() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &[]);
    r.create(
        "snap",
        json!({"vectors": {"size": 6, "distance": "Cosine"}, "shard_number": 2}),
    )
    .await;
    let mut rng = Rng::new(11);
    let points: Vec<(Value, Vec<f32>)> = (0u64..150).map(|i| (json!(i), rng.vector(6))).collect();
    r.upsert_vectors("snap", &points).await;
    r.post(
        "/collections/snap/points/payload?wait=true",
        json!({"payload": {"tag": "before"}, "points": [1, 2, 3]}),
    )
    .await;
    let q = rng.vector(6);
    let query = json!({"query": q, "limit": 10, "with_payload": true});
    let before = r.query("snap", query.clone()).await;

    let desc = r
        .post("/collections/snap/snapshots?wait=true", json!({}))
        .await;
    let snap_name = desc["name"].as_str().expect("name").to_string();
    let size = desc["size"].as_u64().expect("size");
    let listed = r.get("/collections/snap/snapshots").await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == json!(snap_name) && d["size"] == json!(size)),
        "{listed}"
    );

    // The download is the file on disk, byte for byte.
    let response = r
        .request(
            Method::GET,
            &format!("/collections/snap/snapshots/{snap_name}"),
        )
        .send()
        .await
        .expect("download");
    assert_eq!(response.status(), StatusCode::OK);
    let downloaded = response.bytes().await.expect("bytes");
    let file = dirs.snapshots().join("snap").join(&snap_name);
    let on_disk = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert_eq!(downloaded.len() as u64, size);
    assert!(
        downloaded[..] == on_disk[..],
        "download differs from the file"
    );

    // Change everything the snapshot covers, then recover from the file.
    r.post(
        "/collections/snap/points/delete?wait=true",
        json!({"points": [ids(&before)[0].clone()]}),
    )
    .await;
    r.post(
        "/collections/snap/points/payload?wait=true",
        json!({"payload": {"tag": "after"}, "points": [1]}),
    )
    .await;
    r.upsert("snap", json!({"points": [{"id": 9999, "vector": q}]}))
        .await;
    assert_ne!(r.query("snap", query.clone()).await, before);
    let recovered = r
        .put(
            "/collections/snap/snapshots/recover",
            json!({"location": format!("file://{}", file.display())}),
        )
        .await;
    assert_eq!(recovered, json!(true));
    assert_eq!(r.query("snap", query.clone()).await, before);
    assert_eq!(r.info("snap").await["points_count"], json!(150));

    // Into a new collection, from the download URL.
    let url = r.url(&format!("/collections/snap/snapshots/{snap_name}"));
    r.put(
        "/collections/copy/snapshots/recover",
        json!({"location": url}),
    )
    .await;
    assert_eq!(r.query("copy", query.clone()).await, before);

    // Outside the snapshots directory: forbidden whether the file exists or not, so the
    // endpoint tells nobody which files the server has.
    let outside = dirs.root();
    for location in [
        format!("file://{}", outside.join("storage").display()),
        format!("file://{}", outside.join("no-such-file").display()),
        "file:///etc/passwd".to_string(),
        "file:///etc/no-such-file".to_string(),
        "/no-such-dir/x.snapshot".to_string(),
        format!("file://{}/../storage", dirs.snapshots().display()),
    ] {
        let (status, body) = r
            .call(
                Method::PUT,
                "/collections/other/snapshots/recover",
                Some(&json!({"location": location})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{location}: {body}");
    }
    // Inside it, a missing file is just not found.
    let (status, body) = r
        .call(
            Method::PUT,
            "/collections/other/snapshots/recover",
            Some(&json!({"location": format!("file://{}/snap/missing.snapshot", dirs.snapshots().display())})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Wrong checksum: refused, nothing changes.
    let (status, body) = r
        .call(
            Method::PUT,
            "/collections/snap/snapshots/recover",
            Some(&json!({"location": format!("file://{}", file.display()), "checksum": "00"})),
        )
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    assert_eq!(r.query("snap", query).await, before);

    assert_eq!(
        r.ok(
            Method::DELETE,
            &format!("/collections/snap/snapshots/{snap_name}"),
            None
        )
        .await,
        json!(true)
    );
    assert_eq!(r.get("/collections/snap/snapshots").await, json!([]));
    let (status, _) = r
        .call(
            Method::GET,
            &format!("/collections/snap/snapshots/{snap_name}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!file.exists());
}

/// Writes `head` then `body` to a new connection to `addr`, the body in `pieces` parts
/// `pause` apart, and returns all the server sent until it closed (or 60 s).
fn send_slowly(addr: &str, head: &str, body: &[u8], pieces: usize, pause: Duration) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    for piece in body.chunks(body.len().div_ceil(pieces)) {
        std::thread::sleep(pause);
        if s.write_all(piece).is_err() {
            // The server answered and closed (the control's 408).
            break;
        }
    }
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    String::from_utf8_lossy(&got).into_owned()
}

/// Serves one GET with `bytes` as its body, in `pieces` parts `pause` apart.
async fn serve_slowly(
    listener: tokio::net::TcpListener,
    bytes: Vec<u8>,
    pieces: usize,
    pause: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut s, _) = listener.accept().await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "the router closed before its request was complete");
        head.extend_from_slice(&buf[..n]);
    }
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    );
    s.write_all(answer.as_bytes()).await.unwrap();
    for piece in bytes.chunks(bytes.len().div_ceil(pieces)) {
        tokio::time::sleep(pause).await;
        s.write_all(piece).await.unwrap();
    }
    s.shutdown().await.unwrap();
}

/// Snapshot transfers are exempt from the request timeout (they take as long as the data and
/// the network need, and go on once begun): an upload whose body arrives over 2.4 s and a
/// recovery whose download takes as long both succeed under a 1 s limit, and give the
/// collection back value for value; a body trickled as slowly to any other endpoint gets 408.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_transfers_outlast_the_request_timeout() {
    let dirs = DataDirs::new();
    let r = Router::start(
        &dirs,
        &[
            "--request-timeout-secs",
            "1",
            "--snapshot-allowed-hosts",
            "127.0.0.1",
        ],
    );
    r.create("src", json!({"vectors": {"size": 6, "distance": "Dot"}}))
        .await;
    let mut rng = Rng::new(5);
    let points: Vec<(Value, Vec<f32>)> = (0u64..300).map(|i| (json!(i), rng.vector(6))).collect();
    r.upsert_vectors("src", &points).await;
    r.post(
        "/collections/src/points/payload?wait=true",
        json!({"payload": {"tag": "kept"}, "points": [7, 8]}),
    )
    .await;
    let query =
        json!({"query": rng.vector(6), "limit": 20, "with_payload": true, "with_vector": true});
    let expected = r.query("src", query.clone()).await;
    let desc = r
        .post("/collections/src/snapshots?wait=true", json!({}))
        .await;
    let name = desc["name"].as_str().unwrap().to_string();
    let snapshot = r
        .request(Method::GET, &format!("/collections/src/snapshots/{name}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let addr = r.base.trim_start_matches("http://").to_string();
    let (pieces, pause) = (12, Duration::from_millis(200));

    // Upload, the body over 2.4 s.
    let boundary = "vr-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"snapshot\"; filename=\"s.snapshot\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&snapshot);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST /collections/uploaded/snapshots/upload?wait=true HTTP/1.1\r\nHost: x\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let (a, started) = (addr.clone(), std::time::Instant::now());
    let uploaded =
        tokio::task::spawn_blocking(move || send_slowly(&a, &head, &body, pieces, pause))
            .await
            .unwrap();
    assert!(uploaded.starts_with("HTTP/1.1 200"), "{uploaded}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(r.query("uploaded", query.clone()).await, expected);

    // Recovery from a URL whose download takes 2.4 s.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/s.snapshot", listener.local_addr().unwrap());
    let server = tokio::spawn(serve_slowly(listener, snapshot, pieces, pause));
    let started = std::time::Instant::now();
    let (status, answer) = r
        .call(
            Method::PUT,
            "/collections/recovered/snapshots/recover?wait=true",
            Some(&json!({ "location": url })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    server.await.unwrap();
    assert_eq!(r.query("recovered", query.clone()).await, expected);

    // The control: the same pace to an endpoint under the limit.
    let body = br#"{"exact": true}"#.to_vec();
    let head = format!(
        "POST /collections/src/points/count HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let counted =
        tokio::task::spawn_blocking(move || send_slowly(&addr, &head, &body, 5, pause * 2))
            .await
            .unwrap();
    assert!(counted.starts_with("HTTP/1.1 408"), "{counted}");
}
