//! gRPC, through the real Rust `qdrant-client` against the router's gRPC port: answers equal
//! REST's for the same data and queries (ids, scores, payloads), errors keep their meaning
//! (codes, the field's path), a method not served names itself, and the API keys hold.

use crate::common::{DataDirs, Router};
use qdrant_client::qdrant as pb;
use qdrant_client::{Qdrant, QdrantError};
use serde_json::{json, Value};
use std::collections::HashMap;

fn client(router: &Router, key: Option<&str>) -> Qdrant {
    let mut b = Qdrant::from_url(&router.grpc).skip_compatibility_check();
    if let Some(k) = key {
        b = b.api_key(k.to_string());
    }
    b.build().expect("gRPC client")
}

fn code(r: Result<impl std::fmt::Debug, QdrantError>) -> (tonic::Code, String) {
    match r {
        Err(QdrantError::ResponseError { status }) => (status.code(), status.message().to_string()),
        other => panic!("expected a gRPC error, got {other:?}"),
    }
}

fn city_filter(city: &str) -> pb::Filter {
    pb::Filter::must([pb::Condition::matches("city", city.to_string())])
}

fn create_request(name: &str) -> pb::CreateCollection {
    pb::CreateCollection {
        collection_name: name.into(),
        vectors_config: Some(pb::VectorsConfig {
            config: Some(pb::vectors_config::Config::Params(pb::VectorParams {
                size: 8,
                distance: pb::Distance::Cosine as i32,
                ..Default::default()
            })),
        }),
        shard_number: Some(2),
        ..Default::default()
    }
}

fn point(id: u64, vector: Vec<f32>, city: &str, n: i64) -> pb::PointStruct {
    let payload = HashMap::from([
        ("city".to_string(), pb::Value::from(city.to_string())),
        ("n".to_string(), pb::Value::from(n)),
        ("half".to_string(), pb::Value::from(n as f64 / 2.0)),
    ]);
    pb::PointStruct::new(id, vector, payload)
}

#[tokio::test]
async fn grpc_answers_equal_rest_answers() {
    let dirs = DataDirs::new();
    let router = Router::start(&dirs, &[]);
    let grpc = client(&router, None);
    let health = grpc.health_check().await.expect("health check");
    assert_eq!(health.title, "vector-router");

    grpc.create_collection(create_request("g"))
        .await
        .expect("create");
    let mut rng = crate::common::Rng::new(7);
    let cities = ["berlin", "paris", "rome"];
    let points: Vec<pb::PointStruct> = (0..600u64)
        .map(|i| point(i, rng.vector(8), cities[i as usize % 3], i as i64))
        .collect();
    for chunk in points.chunks(200) {
        let r = grpc
            .upsert_points(pb::UpsertPoints {
                collection_name: "g".into(),
                wait: Some(true),
                points: chunk.to_vec(),
                ..Default::default()
            })
            .await
            .expect("upsert");
        assert_eq!(
            r.result.expect("result").status,
            pb::UpdateStatus::Completed as i32
        );
    }

    // The collection as gRPC describes it, and as REST does.
    let info = grpc.collection_info("g").await.expect("info");
    let info = info.result.expect("info result");
    assert_eq!(info.points_count, Some(600));
    let params = info.config.and_then(|c| c.params).expect("params");
    assert_eq!(params.shard_number, 2);
    let rest_info = router.info("g").await;
    assert_eq!(rest_info["config"]["params"]["shard_number"], 2);

    let count = grpc
        .count(pb::CountPoints {
            collection_name: "g".into(),
            filter: Some(city_filter("rome")),
            exact: Some(true),
            ..Default::default()
        })
        .await
        .expect("count");
    assert_eq!(count.result.expect("count").count, 200);

    for q in 0..20 {
        let vector = rng.vector(8);
        let city = cities[q % 3];
        let answer = grpc
            .query(pb::QueryPoints {
                collection_name: "g".into(),
                query: Some(pb::Query::new_nearest(vector.clone())),
                filter: Some(city_filter(city)),
                limit: Some(7),
                offset: Some(2),
                with_payload: Some(true.into()),
                with_vectors: Some(true.into()),
                ..Default::default()
            })
            .await
            .expect("query");
        let rest = router
            .query(
                "g",
                json!({"query": vector, "filter": {"must": [{"key": "city", "match": {"value": city}}]},
                       "limit": 7, "offset": 2, "with_payload": true, "with_vector": true}),
            )
            .await;
        assert_eq!(answer.result.len(), 7, "query {q}");
        assert_eq!(answer.result.len(), rest.len(), "query {q}");
        for (g, r) in answer.result.iter().zip(&rest) {
            let id = match g.id.as_ref().and_then(|i| i.point_id_options.clone()) {
                Some(pb::point_id::PointIdOptions::Num(n)) => n,
                other => panic!("query {q}: id {other:?}"),
            };
            assert_eq!(json!(id), r["id"], "query {q}");
            assert_eq!(
                f64::from(g.score),
                r["score"].as_f64().unwrap(),
                "query {q}"
            );
            assert_eq!(g.payload["city"], pb::Value::from(city.to_string()));
            assert_eq!(json!(g.payload["n"].as_integer()), r["payload"]["n"]);
            assert_eq!(json!(g.payload["half"].as_double()), r["payload"]["half"]);
            let v = match g.vectors.as_ref().and_then(|v| v.vectors_options.clone()) {
                Some(pb::vectors_output::VectorsOptions::Vector(v)) => v.into_vector(),
                other => panic!("query {q}: vectors {other:?}"),
            };
            let dense = match v {
                pb::vector_output::Vector::Dense(d) => d.data,
                other => panic!("query {q}: vector {other:?}"),
            };
            let rest_v: Vec<f64> = serde_json::from_value(r["vector"].clone()).unwrap();
            assert_eq!(
                dense.iter().map(|x| f64::from(*x)).collect::<Vec<_>>(),
                rest_v
            );
        }
    }

    // Scroll pages over gRPC cover the collection once, in id order.
    let mut seen = Vec::new();
    let mut offset = None;
    loop {
        let page = grpc
            .scroll(pb::ScrollPoints {
                collection_name: "g".into(),
                offset,
                limit: Some(128),
                ..Default::default()
            })
            .await
            .expect("scroll");
        seen.extend(page.result.iter().map(|p| p.id.clone().unwrap()));
        match page.next_page_offset {
            Some(next) => offset = Some(next),
            None => break,
        }
    }
    let expected: Vec<pb::PointId> = (0..600u64).map(pb::PointId::from).collect();
    assert_eq!(seen, expected);

    // A delete by filter, then the count agrees over both protocols.
    grpc.delete_points(pb::DeletePoints {
        collection_name: "g".into(),
        wait: Some(true),
        points: Some(city_filter("paris").into()),
        ..Default::default()
    })
    .await
    .expect("delete");
    let rest_count = router
        .post("/collections/g/points/count", json!({"exact": true}))
        .await;
    assert_eq!(rest_count["count"], Value::from(400));
}

#[tokio::test]
async fn grpc_errors_keep_their_meaning() {
    let dirs = DataDirs::new();
    let router = Router::start(&dirs, &[]);
    let grpc = client(&router, None);

    let (c, m) = code(grpc.collection_info("absent").await);
    assert_eq!(c, tonic::Code::NotFound, "{m}");

    grpc.create_collection(create_request("e"))
        .await
        .expect("create");
    let (c, m) = code(grpc.create_collection(create_request("e")).await);
    assert_eq!(c, tonic::Code::AlreadyExists, "{m}");

    // A vector of the wrong size: refused, nothing written, the point named.
    let (c, m) = code(
        grpc.upsert_points(pb::UpsertPoints {
            collection_name: "e".into(),
            wait: Some(true),
            points: vec![
                point(1, vec![0.5; 8], "x", 1),
                point(2, vec![0.5; 3], "x", 2),
            ],
            ..Default::default()
        })
        .await,
    );
    assert_eq!(c, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains('2') && m.contains('3') && m.contains('8'), "{m}");
    assert_eq!(router.info("e").await["points_count"], 0);

    // A method not served answers UNIMPLEMENTED and names itself.
    let (c, m) = code(
        grpc.discover(pb::DiscoverPoints {
            collection_name: "e".into(),
            limit: 3,
            ..Default::default()
        })
        .await,
    );
    assert_eq!(c, tonic::Code::Unimplemented, "{m}");
    assert!(m.contains("Points/Discover"), "{m}");
}

#[tokio::test]
async fn grpc_api_keys_hold() {
    let dirs = DataDirs::new();
    let router = Router::start(
        &dirs,
        &[
            "--api-key",
            "full-secret",
            "--read-only-api-key",
            "read-secret",
        ],
    );
    let anonymous = client(&router, None);
    anonymous.health_check().await.expect("health needs no key");
    let (c, _) = code(anonymous.list_collections().await);
    assert_eq!(c, tonic::Code::Unauthenticated);
    let (c, _) = code(client(&router, Some("wrong")).list_collections().await);
    assert_eq!(c, tonic::Code::Unauthenticated);

    let full = client(&router, Some("full-secret"));
    full.create_collection(create_request("k"))
        .await
        .expect("create with the key");

    let reader = client(&router, Some("read-secret"));
    assert!(reader.collection_exists("k").await.expect("exists"));
    let (c, m) = code(
        reader
            .upsert_points(pb::UpsertPoints {
                collection_name: "k".into(),
                wait: Some(true),
                points: vec![point(1, vec![0.5; 8], "x", 1)],
                ..Default::default()
            })
            .await,
    );
    assert_eq!(c, tonic::Code::PermissionDenied, "{m}");
    let answer = reader
        .query(pb::QueryPoints {
            collection_name: "k".into(),
            query: Some(pb::Query::new_nearest(vec![0.5; 8])),
            ..Default::default()
        })
        .await
        .expect("a read-only key may query");
    assert!(answer.result.is_empty());
}

#[tokio::test]
async fn grpc_fields_rest_reads_otherwise_are_mapped_or_refused() {
    let dirs = DataDirs::new();
    let router = Router::start(&dirs, &[]);
    let grpc = client(&router, None);
    grpc.create_collection(create_request("m"))
        .await
        .expect("create");
    let mut rng = crate::common::Rng::new(11);
    let mut points: Vec<pb::PointStruct> = (0..30u64)
        .map(|i| point(i, rng.vector(8), "x", i as i64))
        .collect();
    // Ten points without a `city`.
    for p in &mut points[..10] {
        p.payload.remove("city");
    }
    grpc.upsert_points(pb::UpsertPoints {
        collection_name: "m".into(),
        wait: Some(true),
        points,
        ..Default::default()
    })
    .await
    .expect("upsert");

    // `is_empty: false` on a field condition: the points that have the key.
    let count = |is_empty: bool| pb::CountPoints {
        collection_name: "m".into(),
        filter: Some(pb::Filter::must([pb::Condition {
            condition_one_of: Some(pb::condition::ConditionOneOf::Field(pb::FieldCondition {
                key: "city".into(),
                is_empty: Some(is_empty),
                ..Default::default()
            })),
        }])),
        exact: Some(true),
        ..Default::default()
    };
    let n = |r: pb::CountResponse| r.result.expect("count").count;
    assert_eq!(n(grpc.count(count(false)).await.expect("count")), 20);
    assert_eq!(n(grpc.count(count(true)).await.expect("count")), 10);

    // A range bound that is not a number is refused, not read as no bound.
    let (c, m) = code(
        grpc.count(pb::CountPoints {
            collection_name: "m".into(),
            filter: Some(pb::Filter::must([pb::Condition::range(
                "n",
                pb::Range {
                    lt: Some(f64::NAN),
                    ..Default::default()
                },
            )])),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(c, tonic::Code::InvalidArgument, "{m}");

    // An unnamed sparse vector is refused (REST would read its two fields as vector names).
    #[allow(deprecated)]
    let sparse = pb::PointStruct {
        id: Some(100u64.into()),
        payload: HashMap::new(),
        vectors: Some(pb::Vectors {
            vectors_options: Some(pb::vectors::VectorsOptions::Vector(pb::Vector {
                vector: Some(pb::vector::Vector::Sparse(pb::SparseVector {
                    values: vec![1.0],
                    indices: vec![3],
                })),
                ..Default::default()
            })),
        }),
    };
    let (c, m) = code(
        grpc.upsert_points(pb::UpsertPoints {
            collection_name: "m".into(),
            wait: Some(true),
            points: vec![sparse],
            ..Default::default()
        })
        .await,
    );
    assert_eq!(c, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("named"), "{m}");

    // gRPC calls are counted under their method, as POSTs with REST's statuses.
    let (_, text) = router.text("/metrics").await;
    assert!(
        text.contains(r#"endpoint="/qdrant.Points/Count",method="POST",status="200""#),
        "{text}"
    );
    assert!(
        text.contains(r#"endpoint="/qdrant.Points/Count",method="POST",status="400""#),
        "{text}"
    );
}
