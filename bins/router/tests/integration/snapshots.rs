//! Snapshots: create, list, download (the bytes of the file), recover after changes (by
//! `file://` path and by the router's own download URL), delete.

use crate::common::{ids, DataDirs, Rng, Router};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

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
