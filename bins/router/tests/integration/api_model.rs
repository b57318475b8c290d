//! The typed request layer seen from a client: a rejected body names the JSON path of the bad
//! field, batches name the search at fault, the query string is typed, unauthenticated bodies
//! are never read, and only large answers are compressed.

use crate::common::{DataDirs, Router};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The error text of a 400 answer (failing the test on any other status).
async fn rejection(r: &Router, method: Method, path: &str, body: Value) -> String {
    let (status, v) = r.call(method.clone(), path, Some(&body)).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{method} {path} {body}: {v}"
    );
    v["status"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error text in {v}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_field_is_named_by_its_json_path() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &[]);
    r.create("c", json!({"vectors": {"size": 4, "distance": "Dot"}}))
        .await;
    let upsert = "/collections/c/points?wait=true";
    let good = json!({"id": 1, "vector": [1.0, 0.0, 0.0, 0.0]});
    let cases: Vec<(Method, &str, Value, &str)> = vec![
        (
            Method::PUT,
            upsert,
            json!({"points": [good, {"id": 2, "vector": [1.0, 2.0, "x", 4.0]}]}),
            "points[1].vector[2]",
        ),
        (
            Method::PUT,
            upsert,
            json!({"points": [good, {"id": -4, "vector": [1.0, 2.0, 3.0, 4.0]}]}),
            "points[1].id",
        ),
        (
            Method::PUT,
            upsert,
            json!({"points": [{"id": 3, "vector": [1.0, 2.0, 3.0, 4.0], "payloadd": {}}]}),
            "points[0]",
        ),
        (
            Method::PUT,
            upsert,
            json!({"batch": {"ids": [1, 2], "vectors": [[1.0, 2.0, 3.0, 4.0], [1.0, null, 3.0, 4.0]]}}),
            "batch.vectors[1][1]",
        ),
        (
            Method::POST,
            "/collections/c/points/query",
            json!({"query": [1.0, 0.0, 0.0, 0.0], "params": {"hnsw_ef": "many"}}),
            "params.hnsw_ef",
        ),
        (
            Method::POST,
            "/collections/c/points/query",
            json!({"query": {"nearest": [1.0, 0.0, 0.0, true]}}),
            "query.nearest[3]",
        ),
        (
            Method::POST,
            "/collections/c/points/query",
            json!({"query": [1.0, 0.0, 0.0, 0.0], "filter": {"must": [{"key": "a", "match": {"valu": 1}}]}}),
            "filter",
        ),
        (
            Method::POST,
            "/collections/c/points/query/batch",
            json!({"searches": [{"query": [1.0, 0.0, 0.0, 0.0]}, {"query": [1.0, 0.0], "limit": "ten"}]}),
            "searches[1].limit",
        ),
        (
            Method::POST,
            "/collections/c/points/search/batch",
            json!({"searches": [{"vector": [1.0, 0.0, 0.0, 0.0], "limit": 1}, {"vector": [1.0, 0.0, 0.0, 0.0]}]}),
            "searches[1]",
        ),
        (
            Method::POST,
            "/collections/c/points/scroll",
            json!({"with_vector": 3}),
            "with_vector",
        ),
        (
            Method::POST,
            "/collections/c/points/delete?wait=true",
            json!({"points": [1, "not-a-uuid"]}),
            "points[1]",
        ),
    ];
    for (method, path, body, place) in cases {
        let error = rejection(&r, method.clone(), path, body.clone()).await;
        assert!(
            error.starts_with("Format error in JSON body: ") && error.contains(place),
            "{method} {path} {body}: `{error}` does not name {place}"
        );
    }
    // Nothing of the rejected writes was applied, not even their good points.
    let count = r.post("/collections/c/points/count", json!({})).await;
    assert_eq!(count["count"], 0, "a rejected write was applied");
    // A valid body still answers, values intact.
    r.upsert("c", json!({"points": [good]})).await;
    let hits = r
        .query(
            "c",
            json!({"query": [0.5, 0.0, 0.0, 0.0], "with_vector": true}),
        )
        .await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["id"], 1);
    assert_eq!(hits[0]["score"], 0.5);
    assert_eq!(hits[0]["vector"], json!([1.0, 0.0, 0.0, 0.0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_string_is_typed() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &[]);
    r.create("c", json!({"vectors": {"size": 2, "distance": "Dot"}}))
        .await;
    let body = json!({"points": [{"id": 1, "vector": [1.0, 0.0]}]});
    for bad in ["wait=maybe", "ordering=sideways", "timeout=-1"] {
        let error = rejection(
            &r,
            Method::PUT,
            &format!("/collections/c/points?{bad}"),
            body.clone(),
        )
        .await;
        assert!(error.contains("query string"), "{bad}: {error}");
    }
    // A read's consistency: a level or a number of replicas, nothing else.
    for bad in ["consistency=most", "consistency=0", "consistency=-2"] {
        let error = rejection(
            &r,
            Method::POST,
            &format!("/collections/c/points/scroll?{bad}"),
            json!({}),
        )
        .await;
        assert!(
            error.contains("query string") && error.contains("consistency"),
            "{bad}: {error}"
        );
    }
    // Known parameters with good values, and parameters this server does not know, pass.
    let done = r
        .put(
            "/collections/c/points?wait=true&ordering=strong&timeout=5&unknown=1",
            body,
        )
        .await;
    assert_eq!(done["status"], "completed");
    let hits = r
        .post(
            "/collections/c/points/query?consistency=all&timeout=3",
            json!({"query": [1.0, 0.0]}),
        )
        .await;
    assert_eq!(hits["points"][0]["id"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_body_is_refused_before_it_is_read() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &["--api-key", "k-123", "--max-request-size-mb", "1"]);
    // Twice the body limit: with the key it is refused for its size, without for the key.
    let big = vec![b' '; 2 << 20];
    let without = r
        .request(Method::PUT, "/collections/c/points")
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    let with = r
        .request(Method::PUT, "/collections/c/points")
        .header("api-key", "k-123")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("request");
    assert_eq!(with.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_large_answers_are_compressed() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &[]);
    r.create("c", json!({"vectors": {"size": 2, "distance": "Dot"}}))
        .await;
    let points: Vec<Value> = (0..200)
        .map(|i| json!({"id": i, "vector": [1.0, i as f32], "payload": {"text": "some words to fill a payload"}}))
        .collect();
    r.upsert("c", json!({ "points": points })).await;
    let encoding = |limit: usize| {
        r.request(Method::POST, "/collections/c/points/scroll")
            .header("accept-encoding", "gzip")
            .json(&json!({"limit": limit}))
            .send()
    };
    let small = encoding(1).await.expect("request");
    assert_eq!(small.status(), StatusCode::OK);
    assert!(small.headers().get("content-encoding").is_none());
    let large = encoding(200).await.expect("request");
    assert_eq!(large.status(), StatusCode::OK);
    assert_eq!(
        large
            .headers()
            .get("content-encoding")
            .map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nulls_and_optional_fields_read_as_absent() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &[]);
    r.create("c", json!({"vectors": {"size": 2, "distance": "Dot"}}))
        .await;
    r.upsert(
        "c",
        json!({"points": [{"id": 1, "vector": [1.0, 0.0]}, {"id": 2, "vector": [0.0, 1.0]}]}),
    )
    .await;
    // `"mmr": null` is no diversity request; a legacy search without a name is the unnamed
    // vector; a `null` body is an empty one.
    let hits = r
        .post(
            "/collections/c/points/query",
            json!({"query": {"nearest": [1.0, 0.2], "mmr": null}, "limit": 1}),
        )
        .await;
    assert_eq!(hits["points"][0]["id"], 1);
    let hits = r
        .post(
            "/collections/c/points/search",
            json!({"vector": {"vector": [0.2, 1.0]}, "limit": 1}),
        )
        .await;
    assert_eq!(hits[0]["id"], 2);
    let count = r.post("/collections/c/points/count", Value::Null).await;
    assert_eq!(count["count"], 2);
    // A matrix cannot query a dense vector: a 400 that says so.
    let (status, body) = r
        .call(
            Method::POST,
            "/collections/c/points/search",
            Some(&json!({"vector": [[1.0, 0.0]], "limit": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_string().contains("multivector"), "{body}");
    // A query by id with the largest offset: nothing left, no failure.
    let hits = r
        .post(
            "/collections/c/points/query",
            json!({"query": 1, "offset": 100_000, "limit": 5}),
        )
        .await;
    assert_eq!(hits["points"], json!([]));
    // A timeout of 0 seconds is refused (Qdrant's minimum is 1).
    let error = rejection(
        &r,
        Method::POST,
        "/collections/c/points/query?timeout=0",
        json!({"query": [1.0, 0.0]}),
    )
    .await;
    assert!(error.contains("timeout"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_factors_are_counted_from_one() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &[]);
    for field in ["replication_factor", "write_consistency_factor"] {
        let error = rejection(
            &r,
            Method::PUT,
            "/collections/rf",
            json!({"vectors": {"size": 2, "distance": "Dot"}, field: 0}),
        )
        .await;
        assert!(
            error.contains(field) && error.contains("1 or larger"),
            "{error}"
        );
    }
    // Nothing was made; with 1 and above it is, and both are echoed.
    r.create(
        "rf",
        json!({"vectors": {"size": 2, "distance": "Dot"},
               "replication_factor": 2, "write_consistency_factor": 1}),
    )
    .await;
    let info = r.get("/collections/rf").await;
    let params = &info["config"]["params"];
    assert_eq!(params["replication_factor"], 2, "{info}");
    assert_eq!(params["write_consistency_factor"], 1, "{info}");
}
