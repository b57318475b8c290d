//! Create, upsert (list and batch forms, integer and UUID ids) and every search form, for
//! each distance and for one and four shards, against brute force with Qdrant's score
//! conventions.

use crate::common::{assert_exact, brute_force, close, ids, DataDirs, Distance, Rng, Router};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const DIM: usize = 8;
const INT_POINTS: u64 = 120;
const UUID_POINTS: u64 = 80;

/// The points of one collection: (id as the API returns it, vector, group).
struct Points {
    all: Vec<(Value, Vec<f32>)>,
    groups: Vec<u64>,
}

impl Points {
    fn of_group(&self, g: u64) -> Vec<(Value, Vec<f32>)> {
        self.all
            .iter()
            .zip(&self.groups)
            .filter(|(_, &pg)| pg == g)
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn without(&self, id: &Value) -> Vec<(Value, Vec<f32>)> {
        self.all.iter().filter(|(i, _)| i != id).cloned().collect()
    }

    fn vector(&self, id: &Value) -> &[f32] {
        &self.all.iter().find(|(i, _)| i == id).expect("known id").1
    }
}

/// Integer ids in the list form, UUIDs (sent in upper case) in the batch form.
async fn fill(r: &Router, name: &str, rng: &mut Rng) -> Points {
    let mut all = Vec::new();
    let mut groups = Vec::new();
    let mut list = Vec::new();
    for i in 0..INT_POINTS {
        let v = rng.vector(DIM);
        list.push(json!({"id": i, "vector": v, "payload": {"group": i % 3, "n": i}}));
        all.push((json!(i), v));
        groups.push(i % 3);
    }
    r.upsert(name, json!({ "points": list })).await;
    let (mut batch_ids, mut vectors, mut payloads) = (Vec::new(), Vec::new(), Vec::new());
    for i in INT_POINTS..INT_POINTS + UUID_POINTS {
        let uuid = rng.uuid();
        let v = rng.vector(DIM);
        batch_ids.push(json!(uuid.to_uppercase()));
        vectors.push(json!(v));
        payloads.push(json!({"group": i % 3, "n": i}));
        all.push((json!(uuid), v));
        groups.push(i % 3);
    }
    r.upsert(
        name,
        json!({"batch": {"ids": batch_ids, "vectors": vectors, "payloads": payloads}}),
    )
    .await;
    Points { all, groups }
}

async fn check_distance(r: &Router, distance: Distance, shards: u64, seed: u64) {
    let name = format!("flow_{}_{shards}", distance.name().to_lowercase());
    let ctx = format!("{name} (seed {seed})");
    r.create(
        &name,
        json!({"vectors": {"size": DIM, "distance": distance.name()}, "shard_number": shards}),
    )
    .await;
    let mut rng = Rng::new(seed);
    let points = fill(r, &name, &mut rng).await;
    let base = format!("/collections/{name}");

    let info = r.info(&name).await;
    assert_eq!(
        info["config"]["params"]["vectors"],
        json!({"size": DIM, "distance": distance.name()}),
        "{ctx}: vectors must be echoed as created"
    );
    assert_eq!(
        info["config"]["params"]["shard_number"],
        json!(shards),
        "{ctx}"
    );
    assert_eq!(
        info["points_count"],
        json!(INT_POINTS + UUID_POINTS),
        "{ctx}"
    );
    assert_eq!(info["status"], "green", "{ctx}: {info}");

    for round in 0..3 {
        let q = rng.vector(DIM);
        let expected = brute_force(distance, &q, &points.all);
        let what = format!("{ctx} query {round}");

        // Raw vector and the client's {"nearest": ...} wrapping, default and exact params.
        let got = r.query(&name, json!({"query": q, "limit": 10})).await;
        assert_exact(&format!("{what} raw"), &got, &expected[..10]);
        let got = r
            .query(
                &name,
                json!({"query": {"nearest": q}, "limit": 10, "params": {"exact": true}}),
            )
            .await;
        assert_exact(&format!("{what} nearest exact"), &got, &expected[..10]);
        assert!(
            got.iter().all(|p| p["version"].is_u64()),
            "{what}: version is required: {got:?}"
        );

        // Default limit is 10, offset skips.
        let got = r
            .query(&name, json!({"query": q, "offset": 3, "limit": 5}))
            .await;
        assert_exact(&format!("{what} offset"), &got, &expected[3..8]);
        let got = r.query(&name, json!({"query": q})).await;
        assert_eq!(got.len(), 10, "{what}: default limit");

        // score_threshold halfway between the 5th and 6th scores keeps exactly five, whichever
        // way the metric points.
        let t = (expected[4].1 + expected[5].1) / 2.0;
        let got = r
            .query(
                &name,
                json!({"query": q, "limit": 10, "score_threshold": t}),
            )
            .await;
        assert_exact(&format!("{what} threshold {t}"), &got, &expected[..5]);
        assert!(got
            .iter()
            .all(|p| distance.passes(p["score"].as_f64().unwrap(), t)));

        // A filter restricts the candidates before the top k.
        let group = round as u64;
        let got = r
            .query(
                &name,
                json!({"query": q, "limit": 10, "filter": {"must": [{"key": "group", "match": {"value": group}}]}, "with_payload": true}),
            )
            .await;
        let filtered = brute_force(distance, &q, &points.of_group(group));
        assert_exact(&format!("{what} filter"), &got, &filtered[..10]);
        assert!(got.iter().all(|p| p["payload"]["group"] == json!(group)));

        // Payload is off by default in query; vectors come back as stored (unit length for
        // Cosine).
        let got = r.query(&name, json!({"query": q, "limit": 3})).await;
        assert!(
            got.iter().all(|p| p["payload"].is_null()),
            "{what}: payload must be off by default: {got:?}"
        );
        let got = r
            .query(
                &name,
                json!({"query": q, "limit": 3, "with_vector": true, "with_payload": true}),
            )
            .await;
        for p in &got {
            let v: Vec<f64> = p["vector"]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: no vector in {p}"))
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let sent: Vec<f64> = points
                .vector(&p["id"])
                .iter()
                .map(|&x| f64::from(x))
                .collect();
            let want = if distance == Distance::Cosine {
                crate::common::normalised(&sent)
            } else {
                sent
            };
            assert!(
                v.iter().zip(&want).all(|(a, b)| close(*a, *b)),
                "{what}: vector {v:?}, expected {want:?}"
            );
            assert!(p["payload"]["n"].is_u64(), "{what}: {p}");
        }
    }

    // Query by id (integer and UUID): the point's own vector, the point left out.
    for id in [json!(7), points.all[INT_POINTS as usize + 3].0.clone()] {
        let expected = brute_force(distance, points.vector(&id), &points.without(&id));
        let got = r
            .query(&name, json!({"query": {"nearest": id}, "limit": 10}))
            .await;
        assert_exact(&format!("{ctx} by id {id}"), &got, &expected[..10]);
    }

    // Batch query: one answer per request, in order.
    let (q1, q2) = (rng.vector(DIM), rng.vector(DIM));
    let batch = r
        .post(
            &format!("{base}/points/query/batch"),
            json!({"searches": [
                {"query": q1, "limit": 3},
                {"query": {"nearest": q2}, "limit": 4, "filter": {"must": [{"key": "group", "match": {"value": 2}}]}},
            ]}),
        )
        .await;
    let batch = batch.as_array().expect("list");
    assert_eq!(batch.len(), 2);
    assert_exact(
        &format!("{ctx} batch 0"),
        batch[0]["points"].as_array().unwrap(),
        &brute_force(distance, &q1, &points.all)[..3],
    );
    assert_exact(
        &format!("{ctx} batch 1"),
        batch[1]["points"].as_array().unwrap(),
        &brute_force(distance, &q2, &points.of_group(2))[..4],
    );

    // Legacy search and search batch: a bare list of scored points.
    let got = r
        .post(
            &format!("{base}/points/search"),
            json!({"vector": q1, "limit": 6}),
        )
        .await;
    let expected = brute_force(distance, &q1, &points.all);
    assert_exact(
        &format!("{ctx} legacy"),
        got.as_array().unwrap(),
        &expected[..6],
    );
    let t = (expected[1].1 + expected[2].1) / 2.0;
    let got = r
        .post(
            &format!("{base}/points/search/batch"),
            json!({"searches": [{"vector": q1, "limit": 6, "score_threshold": t}, {"vector": q2, "limit": 2, "offset": 1}]}),
        )
        .await;
    assert_exact(
        &format!("{ctx} legacy batch 0"),
        got[0].as_array().unwrap(),
        &expected[..2],
    );
    assert_exact(
        &format!("{ctx} legacy batch 1"),
        got[1].as_array().unwrap(),
        &brute_force(distance, &q2, &points.all)[1..3],
    );
    let (status, body) = r
        .call(
            Method::POST,
            &format!("{base}/points/search"),
            Some(&json!({"vector": q1})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "legacy search needs a limit: {body}"
    );

    // No query: points by id.
    let got = r.query(&name, json!({"limit": 4})).await;
    assert_eq!(
        ids(&got),
        vec![json!(0), json!(1), json!(2), json!(3)],
        "{ctx}"
    );

    // A query of the wrong dimension is a 400 in Qdrant's error shape.
    let (status, body) = r
        .call(
            Method::POST,
            &format!("{base}/points/query"),
            Some(&json!({"query": [0.5, 0.5]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["status"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("dimension")),
        "{body}"
    );

    // NaN arrives as null: a 400, in queries and in upserts.
    let nan = json!([0.1, null, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let (status, body) = r
        .call(
            Method::POST,
            &format!("{base}/points/query"),
            Some(&json!({"query": {"nearest": nan}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = r
        .call(
            Method::PUT,
            &format!("{base}/points?wait=true"),
            Some(&json!({"points": [{"id": 1, "vector": nan}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_distance_on_one_and_four_shards() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &[]);
    for (i, distance) in Distance::ALL.into_iter().enumerate() {
        for shards in [1, 4] {
            check_distance(&r, distance, shards, 1000 + i as u64 * 10 + shards).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_vectors() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &[]);
    let config = json!({"vectors": {
        "image": {"size": 4, "distance": "Dot"},
        "text": {"size": 6, "distance": "Euclid", "on_disk": true},
    }});
    r.create("named", config.clone()).await;
    let info = r.info("named").await;
    assert_eq!(
        info["config"]["params"]["vectors"], config["vectors"],
        "{info}"
    );

    let mut rng = Rng::new(77);
    let (mut image, mut text) = (Vec::new(), Vec::new());
    let mut list = Vec::new();
    for i in 0u64..60 {
        let im = rng.vector(4);
        image.push((json!(i), im.clone()));
        // Odd points have no `text` vector: searches using it never see them.
        if i % 2 == 0 {
            let t = rng.vector(6);
            text.push((json!(i), t.clone()));
            list.push(json!({"id": i, "vector": {"image": im, "text": t}}));
        } else {
            list.push(json!({"id": i, "vector": {"image": im}}));
        }
    }
    r.upsert("named", json!({ "points": list })).await;
    let (mut bids, mut bimage, mut btext) = (Vec::new(), Vec::new(), Vec::new());
    for i in 100u64..120 {
        let (im, t) = (rng.vector(4), rng.vector(6));
        image.push((json!(i), im.clone()));
        text.push((json!(i), t.clone()));
        bids.push(json!(i));
        bimage.push(im);
        btext.push(t);
    }
    r.upsert(
        "named",
        json!({"batch": {"ids": bids, "vectors": {"image": bimage, "text": btext}}}),
    )
    .await;
    assert_eq!(r.info("named").await["points_count"], json!(80));

    let q = rng.vector(6);
    let got = r
        .query("named", json!({"query": q, "using": "text", "limit": 80}))
        .await;
    assert_eq!(text.len(), 50);
    assert_exact(
        "named text",
        &got,
        &brute_force(Distance::Euclid, &q, &text),
    );
    let q = rng.vector(4);
    let got = r
        .query(
            "named",
            json!({"query": {"nearest": q}, "using": "image", "limit": 10}),
        )
        .await;
    assert_exact(
        "named image",
        &got,
        &brute_force(Distance::Dot, &q, &image)[..10],
    );
    let got = r
        .post(
            "/collections/named/points/search",
            json!({"vector": {"name": "image", "vector": q}, "limit": 10}),
        )
        .await;
    assert_exact(
        "named legacy",
        got.as_array().unwrap(),
        &brute_force(Distance::Dot, &q, &image)[..10],
    );

    // Vectors come back as a map with only the names the point has, or those asked for.
    let records = r
        .post(
            "/collections/named/points",
            json!({"ids": [1, 2], "with_vector": true}),
        )
        .await;
    for rec in records.as_array().unwrap() {
        let names: Vec<&String> = rec["vector"].as_object().expect("map").keys().collect();
        if rec["id"] == json!(1) {
            assert_eq!(names, ["image"], "{rec}");
        } else {
            assert_eq!(names.len(), 2, "{rec}");
        }
    }
    let records = r
        .post(
            "/collections/named/points",
            json!({"ids": [2], "with_vector": ["text"]}),
        )
        .await;
    assert_eq!(
        records[0]["vector"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["text"]
    );

    // No unnamed vector here; an unknown name in an upsert is refused.
    let (status, body) = r
        .call(
            Method::POST,
            "/collections/named/points/query",
            Some(&json!({"query": [1.0, 0.0, 0.0, 0.0]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = r
        .call(
            Method::PUT,
            "/collections/named/points?wait=true",
            Some(&json!({"points": [{"id": 500, "vector": {"audio": [1.0, 2.0]}}]})),
        )
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    assert_eq!(r.info("named").await["points_count"], json!(80));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_string_parameters_are_accepted() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &[]);
    r.create_at(
        "/collections/qs?timeout=60",
        json!({"vectors": {"size": 2, "distance": "Dot"}}),
    )
    .await;
    // wait=false: acknowledged, and visible to the next read all the same.
    let ack = r
        .put(
            "/collections/qs/points?wait=false&ordering=strong&timeout=10",
            json!({"points": [{"id": 1, "vector": [1.0, 0.0]}, {"id": 2, "vector": [0.0, 1.0]}]}),
        )
        .await;
    assert_eq!(ack["status"], "acknowledged", "{ack}");
    let got = r
        .post(
            "/collections/qs/points/query?consistency=majority&timeout=5",
            json!({"query": [1.0, 0.0], "limit": 1}),
        )
        .await;
    assert_eq!(got["points"][0]["id"], json!(1));
    let count = r
        .post(
            "/collections/qs/points/count?consistency=all",
            json!({"exact": true}),
        )
        .await;
    assert_eq!(count["count"], json!(2));
    let done = r
        .post(
            "/collections/qs/points/delete?wait=true&ordering=weak",
            json!({"points": [2]}),
        )
        .await;
    assert_eq!(done["status"], "completed");
    let scrolled = r
        .post("/collections/qs/points/scroll?consistency=1", json!({}))
        .await;
    assert_eq!(ids(scrolled["points"].as_array().unwrap()), vec![json!(1)]);

    // An asynchronous snapshot: 202 without a result, then listed.
    let response = r
        .request(Method::POST, "/collections/qs/snapshots?wait=false")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "accepted", "{body}");
    assert!(body.get("result").is_none(), "{body}");
    crate::common::eventually(
        "the snapshot",
        std::time::Duration::from_secs(10),
        || async {
            let list = r.get("/collections/qs/snapshots").await;
            (list.as_array().map(Vec::len) == Some(1)).then_some(())
        },
    )
    .await;
}
