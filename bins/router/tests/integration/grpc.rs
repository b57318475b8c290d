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

/// Creates collection `name` (`create_request`) holding `n` points of seeded random vectors.
async fn seeded_collection(grpc: &Qdrant, name: &str, n: u64, seed: u64) {
    grpc.create_collection(create_request(name))
        .await
        .expect("create");
    let mut rng = crate::common::Rng::new(seed);
    grpc.upsert_points(pb::UpsertPoints {
        collection_name: name.into(),
        wait: Some(true),
        points: (0..n)
            .map(|i| point(i, rng.vector(8), "x", i as i64))
            .collect(),
        ..Default::default()
    })
    .await
    .expect("upsert");
}

/// What a refused call must leave as it was, as text to compare: collection `name`'s points
/// (ids, payloads in key order, vectors) and configuration, the collections, the aliases, and
/// the collection's and the full snapshots.
async fn grpc_state(grpc: &Qdrant, name: &str) -> String {
    let scroll = grpc
        .scroll(pb::ScrollPoints {
            collection_name: name.into(),
            limit: Some(1000),
            with_payload: Some(true.into()),
            with_vectors: Some(true.into()),
            ..Default::default()
        })
        .await
        .expect("scroll");
    // Payloads are hash maps: compared in key order.
    let points: Vec<String> = scroll
        .result
        .iter()
        .map(|p| {
            let payload: std::collections::BTreeMap<_, _> = p.payload.iter().collect();
            format!("{:?} {payload:?} {:?}", p.id, p.vectors)
        })
        .collect();
    let config = grpc
        .collection_info(name)
        .await
        .expect("info")
        .result
        .and_then(|r| r.config);
    let collections = grpc.list_collections().await.expect("list").collections;
    let aliases = grpc.list_aliases().await.expect("aliases").aliases;
    let snapshots = grpc.list_snapshots(name).await.expect("snapshots");
    let full_snapshots = grpc.list_full_snapshots().await.expect("full snapshots");
    format!(
        "{points:?} {config:?} {collections:?} {aliases:?} {:?} {:?}",
        snapshots.snapshot_descriptions, full_snapshots.snapshot_descriptions
    )
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

    // An operation not served answers UNIMPLEMENTED and names itself.
    let (c, m) = code(
        grpc.update_collection_cluster_setup(pb::UpdateCollectionClusterSetupRequest {
            collection_name: "e".into(),
            timeout: None,
            operation: Some(
                pb::update_collection_cluster_setup_request::Operation::MoveShard(pb::MoveShard {
                    shard_id: 0,
                    to_shard_id: None,
                    from_peer_id: 0,
                    to_peer_id: 1,
                    method: None,
                }),
            ),
        })
        .await,
    );
    assert_eq!(c, tonic::Code::Unimplemented, "{m}");
    assert!(m.contains("move_shard"), "{m}");
}

/// A scored point list over gRPC as (id, score) pairs.
fn scored_pairs(points: &[pb::ScoredPoint]) -> Vec<(Value, f64)> {
    points
        .iter()
        .map(|p| {
            let id = match p.id.as_ref().and_then(|i| i.point_id_options.clone()) {
                Some(pb::point_id::PointIdOptions::Num(n)) => json!(n),
                other => panic!("id {other:?}"),
            };
            (id, f64::from(p.score))
        })
        .collect()
}

/// A scored point list over REST as (id, score) pairs.
fn rest_pairs(v: &Value) -> Vec<(Value, f64)> {
    v.as_array()
        .expect("points")
        .iter()
        .map(|p| (p["id"].clone(), p["score"].as_f64().unwrap()))
        .collect()
}

fn example(id: u64) -> pb::VectorExample {
    pb::VectorExample {
        example: Some(pb::vector_example::Example::Id(id.into())),
    }
}

fn example_vector(v: Vec<f32>) -> pb::VectorExample {
    pb::VectorExample {
        example: Some(pb::vector_example::Example::Vector(v.into())),
    }
}

#[tokio::test]
async fn grpc_discovery_recommend_groups_and_vector_names_equal_rest() {
    let dirs = DataDirs::new();
    let router = Router::start(&dirs, &[]);
    let grpc = client(&router, None);
    grpc.create_collection(create_request("d"))
        .await
        .expect("create");
    let mut rng = crate::common::Rng::new(11);
    let cities = ["berlin", "paris", "rome"];
    let points: Vec<pb::PointStruct> = (0..400u64)
        .map(|i| point(i, rng.vector(8), cities[i as usize % 3], i as i64))
        .collect();
    grpc.upsert_points(pb::UpsertPoints {
        collection_name: "d".into(),
        wait: Some(true),
        points,
        ..Default::default()
    })
    .await
    .expect("upsert");

    // Discovery (with a target) and context search (without), by ids and by vectors, with a
    // filter and an offset, each against REST's legacy discovery on the same body.
    let mut requests = Vec::new();
    let mut bodies = Vec::new();
    for q in 0..6u64 {
        let (t, p, n) = (q * 7 + 1, q * 11 + 2, q * 13 + 5);
        let negative = rng.vector(8);
        let city = cities[q as usize % 3];
        let target = (q % 3 != 2).then(|| pb::TargetVector {
            target: Some(pb::target_vector::Target::Single(example(t))),
        });
        requests.push(pb::DiscoverPoints {
            collection_name: "d".into(),
            target,
            context: vec![
                pb::ContextExamplePair {
                    positive: Some(example(p)),
                    negative: Some(example_vector(negative.clone())),
                },
                pb::ContextExamplePair {
                    positive: Some(example(p + 1)),
                    negative: Some(example(n)),
                },
            ],
            filter: (q % 2 == 0).then(|| city_filter(city)),
            limit: 6,
            offset: Some(q % 3),
            params: Some(pb::SearchParams {
                exact: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut body = json!({
            "context": [{"positive": p, "negative": negative}, {"positive": p + 1, "negative": n}],
            "limit": 6, "offset": q % 3, "params": {"exact": true}});
        if q % 3 != 2 {
            body["target"] = json!(t);
        }
        if q % 2 == 0 {
            body["filter"] = json!({"must": [{"key": "city", "match": {"value": city}}]});
        }
        bodies.push(body);
    }
    for (q, (r, body)) in requests.iter().zip(&bodies).enumerate() {
        let got = grpc.discover(r.clone()).await.expect("discover").result;
        let want = router
            .post("/collections/d/points/discover", body.clone())
            .await;
        assert_eq!(got.len(), 6, "discover {q}");
        assert_eq!(scored_pairs(&got), rest_pairs(&want), "discover {q}");
    }
    let batch = grpc
        .discover_batch(&pb::DiscoverBatchPoints {
            collection_name: "d".into(),
            discover_points: requests.clone(),
            read_consistency: None,
            timeout: None,
        })
        .await
        .expect("discover batch");
    let want = router
        .post(
            "/collections/d/points/discover/batch",
            json!({ "searches": bodies }),
        )
        .await;
    assert_eq!(batch.result.len(), requests.len());
    for (q, (got, want)) in batch
        .result
        .iter()
        .zip(want.as_array().unwrap())
        .enumerate()
    {
        assert_eq!(scored_pairs(&got.result), rest_pairs(want), "batch {q}");
    }
    // A context pair without its negative side is refused, naming it.
    let mut bad = requests[0].clone();
    bad.context[1].negative = None;
    let (c, m) = code(grpc.discover(bad).await);
    assert_eq!(c, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("context[1].negative"), "{m}");

    // Recommendation by groups, with a negative vector beside the ids.
    let negative = rng.vector(8);
    let got = grpc
        .recommend_groups(pb::RecommendPointGroups {
            collection_name: "d".into(),
            positive: vec![1.into(), 2.into()],
            negative: vec![3.into()],
            negative_vectors: vec![negative.clone().into()],
            limit: 3,
            group_by: "city".into(),
            group_size: 2,
            with_payload: Some(true.into()),
            strategy: Some(pb::RecommendStrategy::BestScore as i32),
            ..Default::default()
        })
        .await
        .expect("recommend groups")
        .result
        .expect("groups");
    assert_eq!(got.groups.len(), 3);
    let want = router
        .post(
            "/collections/d/points/recommend/groups",
            json!({"positive": [1, 2], "negative": [3, negative], "limit": 3,
                   "group_by": "city", "group_size": 2, "with_payload": true,
                   "strategy": "best_score"}),
        )
        .await;
    let want_groups = want["groups"].as_array().expect("groups");
    assert_eq!(got.groups.len(), want_groups.len());
    for (g, w) in got.groups.iter().zip(want_groups) {
        let id = match g.id.as_ref().and_then(|i| i.kind.clone()) {
            Some(pb::group_id::Kind::StringValue(s)) => json!(s),
            other => panic!("group id {other:?}"),
        };
        assert_eq!(id, w["id"]);
        assert_eq!(scored_pairs(&g.hits), rest_pairs(&w["hits"]));
    }

    // Vector names: created and deleted over gRPC, seen over REST.
    let mut points_api = pb::points_client::PointsClient::connect(router.grpc.clone())
        .await
        .expect("points client");
    let dense = pb::CreateVectorNameRequest {
        collection_name: "v".into(),
        wait: Some(true),
        vector_name: "b".into(),
        timeout: None,
        ordering: None,
        vector_config: Some(pb::create_vector_name_request::VectorConfig::DenseConfig(
            pb::DenseVectorCreationConfig {
                size: 4,
                distance: pb::Distance::Euclid as i32,
                multivector_config: None,
                datatype: None,
            },
        )),
    };
    router
        .create(
            "v",
            json!({"vectors": {"a": {"size": 8, "distance": "Cosine"}}}),
        )
        .await;
    points_api
        .create_vector_name(dense.clone())
        .await
        .expect("create vector b");
    points_api
        .create_vector_name(pb::CreateVectorNameRequest {
            vector_name: "s".into(),
            vector_config: Some(pb::create_vector_name_request::VectorConfig::SparseConfig(
                pb::SparseVectorCreationConfig {
                    modifier: Some(pb::Modifier::Idf as i32),
                    datatype: None,
                },
            )),
            ..dense.clone()
        })
        .await
        .expect("create sparse vector s");
    let info = router.info("v").await;
    assert_eq!(
        info["config"]["params"]["vectors"]["b"],
        json!({"size": 4, "distance": "Euclid"}),
        "{info}"
    );
    assert_eq!(
        info["config"]["params"]["sparse_vectors"]["s"]["modifier"], "idf",
        "{info}"
    );
    // The same vector again changes nothing; another under its name is refused.
    points_api
        .create_vector_name(dense.clone())
        .await
        .expect("vector b again, alike");
    let mut other = dense.clone();
    other.vector_config = Some(pb::create_vector_name_request::VectorConfig::DenseConfig(
        pb::DenseVectorCreationConfig {
            size: 5,
            distance: pb::Distance::Euclid as i32,
            multivector_config: None,
            datatype: None,
        },
    ));
    let status = points_api
        .create_vector_name(other)
        .await
        .expect_err("another vector b");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("vectors.b: exists with another size"),
        "{status:?}"
    );
    let missing = points_api
        .create_vector_name(pb::CreateVectorNameRequest {
            vector_name: "c".into(),
            vector_config: None,
            ..dense.clone()
        })
        .await
        .expect_err("no configuration");
    assert_eq!(missing.code(), tonic::Code::InvalidArgument, "{missing:?}");
    points_api
        .delete_vector_name(pb::DeleteVectorNameRequest {
            collection_name: "v".into(),
            wait: Some(true),
            vector_name: "b".into(),
            timeout: None,
            ordering: None,
        })
        .await
        .expect("delete vector b");
    let info = router.info("v").await;
    assert!(
        info["config"]["params"]["vectors"].get("b").is_none(),
        "{info}"
    );
    assert!(
        info["config"]["params"]["vectors"].get("a").is_some(),
        "{info}"
    );
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

/// A codec that sends and receives a message's bytes as they are, so that any method can be
/// called by its path with any body (an empty message is every request type's all-defaults).
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Calls `method` with `message` (raw bytes) and `key`; the answer's code.
async fn raw_call(
    channel: &tonic::transport::Channel,
    method: &'static str,
    key: Option<&str>,
    message: Vec<u8>,
) -> (tonic::Code, String) {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let mut request = tonic::Request::new(message);
    if let Some(k) = key {
        request
            .metadata_mut()
            .insert("api-key", k.parse().expect("ascii key"));
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
    match grpc.unary(request, path, RawCodec).await {
        Ok(_) => (tonic::Code::Ok, String::new()),
        Err(status) => (status.code(), status.message().to_string()),
    }
}

/// Every method of Qdrant's gRPC API the router serves, and whether Qdrant's read-only key
/// may call it.
const GRPC_METHODS: &[(&str, bool)] = &[
    ("/qdrant.Collections/Get", true),
    ("/qdrant.Collections/List", true),
    ("/qdrant.Collections/ListAliases", true),
    ("/qdrant.Collections/ListCollectionAliases", true),
    ("/qdrant.Collections/CollectionExists", true),
    ("/qdrant.Collections/CollectionClusterInfo", true),
    ("/qdrant.Collections/ListShardKeys", true),
    ("/qdrant.Collections/Create", false),
    ("/qdrant.Collections/Update", false),
    ("/qdrant.Collections/Delete", false),
    ("/qdrant.Collections/UpdateAliases", false),
    ("/qdrant.Collections/UpdateCollectionClusterSetup", false),
    ("/qdrant.Collections/CreateShardKey", false),
    ("/qdrant.Collections/DeleteShardKey", false),
    ("/qdrant.Points/Get", true),
    ("/qdrant.Points/Search", true),
    ("/qdrant.Points/SearchBatch", true),
    ("/qdrant.Points/SearchGroups", true),
    ("/qdrant.Points/Scroll", true),
    ("/qdrant.Points/Recommend", true),
    ("/qdrant.Points/RecommendBatch", true),
    ("/qdrant.Points/RecommendGroups", true),
    ("/qdrant.Points/Discover", true),
    ("/qdrant.Points/DiscoverBatch", true),
    ("/qdrant.Points/Count", true),
    ("/qdrant.Points/Query", true),
    ("/qdrant.Points/QueryBatch", true),
    ("/qdrant.Points/QueryGroups", true),
    ("/qdrant.Points/Facet", true),
    ("/qdrant.Points/SearchMatrixPairs", true),
    ("/qdrant.Points/SearchMatrixOffsets", true),
    ("/qdrant.Points/Upsert", false),
    ("/qdrant.Points/Delete", false),
    ("/qdrant.Points/UpdateVectors", false),
    ("/qdrant.Points/DeleteVectors", false),
    ("/qdrant.Points/SetPayload", false),
    ("/qdrant.Points/OverwritePayload", false),
    ("/qdrant.Points/DeletePayload", false),
    ("/qdrant.Points/ClearPayload", false),
    ("/qdrant.Points/CreateFieldIndex", false),
    ("/qdrant.Points/DeleteFieldIndex", false),
    ("/qdrant.Points/CreateVectorName", false),
    ("/qdrant.Points/DeleteVectorName", false),
    ("/qdrant.Points/UpdateBatch", false),
    ("/qdrant.Snapshots/List", true),
    ("/qdrant.Snapshots/ListFull", true),
    ("/qdrant.Snapshots/Create", false),
    ("/qdrant.Snapshots/Delete", false),
    ("/qdrant.Snapshots/CreateFull", false),
    ("/qdrant.Snapshots/DeleteFull", false),
];

/// Every gRPC method, as the REST routes in `security.rs`: without a key (or with a wrong
/// one) `UNAUTHENTICATED`, whatever the message; the read-only key `PERMISSION_DENIED` on every
/// write, before its message (twice the size limit) is read, and through on every read; the
/// full key through the gate, where the size limit then refuses the oversized message. Nothing
/// a refused call sent changed the collection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grpc_method_is_gated() {
    let dirs = DataDirs::new();
    let router = Router::start(
        &dirs,
        &[
            "--api-key",
            "full-secret",
            "--read-only-api-key",
            "read-secret",
            "--max-request-size-mb",
            "1",
        ],
    );
    let full = client(&router, Some("full-secret"));
    seeded_collection(&full, "k", 10, 5).await;
    let state = || grpc_state(&full, "k");
    let before = state().await;

    let channel = tonic::transport::Endpoint::from_shared(router.grpc.clone())
        .expect("gRPC url")
        .connect()
        .await
        .expect("connect");
    let oversized = vec![0x0a; 2 << 20];
    for &(method, reads) in GRPC_METHODS {
        for key in [None, Some("wrong")] {
            let (c, m) = raw_call(&channel, method, key, oversized.clone()).await;
            assert_eq!(
                c,
                tonic::Code::Unauthenticated,
                "{method} with {key:?}: {m}"
            );
        }
        let (c, m) = if reads {
            raw_call(&channel, method, Some("read-secret"), Vec::new()).await
        } else {
            raw_call(&channel, method, Some("read-secret"), oversized.clone()).await
        };
        if reads {
            assert!(
                c != tonic::Code::Unauthenticated && c != tonic::Code::PermissionDenied,
                "the read-only key refused a read: {method}: {c:?} {m}"
            );
        } else {
            assert_eq!(
                c,
                tonic::Code::PermissionDenied,
                "read-only key: {method}: {m}"
            );
        }
        let (c, m) = raw_call(&channel, method, Some("full-secret"), oversized.clone()).await;
        assert_eq!(c, tonic::Code::OutOfRange, "full key: {method}: {m}");
    }
    let (c, m) = raw_call(&channel, "/qdrant.Qdrant/HealthCheck", None, Vec::new()).await;
    assert_eq!(c, tonic::Code::Ok, "health needs no key: {m}");
    let (c, m) = raw_call(
        &channel,
        "/qdrant.Points/NoSuchMethod",
        Some("full-secret"),
        Vec::new(),
    )
    .await;
    assert_eq!(c, tonic::Code::Unimplemented, "{m}");
    assert_eq!(state().await, before, "a refused call changed something");
}

/// Messages no client encoder makes, sent to every method: each is refused as gRPC's status
/// table prescribes for a request that does not parse (`INTERNAL`, naming the decode error;
/// tonic answers so before any handler runs, as Qdrant's server does), never by a panic or a
/// reset stream, the server keeps serving, and nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_are_client_errors_on_every_method() {
    let dirs = DataDirs::new();
    let router = Router::start(&dirs, &[]);
    let grpc = client(&router, None);
    seeded_collection(&grpc, "k", 5, 9).await;
    let state = || grpc_state(&grpc, "k");
    let before = state().await;
    let channel = tonic::transport::Endpoint::from_shared(router.grpc.clone())
        .expect("gRPC url")
        .connect()
        .await
        .expect("connect");
    let bodies: [(&str, Vec<u8>); 4] = [
        ("a truncated varint", vec![0x0a, 0xff]),
        ("a length past the end", vec![0x0a, 0x7f, b'k']),
        ("field 0", vec![0x00, 0x01]),
        ("a group end tag", vec![0x0c]),
    ];
    for &(method, _) in GRPC_METHODS {
        for (what, body) in &bodies {
            let (c, m) = raw_call(&channel, method, None, body.clone()).await;
            assert!(
                c == tonic::Code::Internal && m.contains("decode"),
                "{method} with {what}: {c:?} {m}"
            );
        }
    }
    assert_eq!(state().await, before, "a refused message changed something");
}

/// Bad requests that decode, table-driven over the gRPC methods that take data: each is a
/// client error (`INVALID_ARGUMENT`, or `NOT_FOUND` for what does not exist), never a server
/// error, and none changes the collection or the list of collections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_client_errors_and_change_nothing() {
    use std::future::Future;
    use std::pin::Pin;
    type Call<'a> = Pin<Box<dyn Future<Output = (tonic::Code, String)> + Send + 'a>>;
    fn call<'a, T: std::fmt::Debug + Send + 'a>(
        f: impl Future<Output = Result<T, QdrantError>> + Send + 'a,
    ) -> Call<'a> {
        Box::pin(async move {
            match f.await {
                Ok(answer) => (tonic::Code::Ok, format!("{answer:?}")),
                Err(QdrantError::ResponseError { status }) => {
                    (status.code(), status.message().to_string())
                }
                Err(e) => (tonic::Code::Unknown, e.to_string()),
            }
        })
    }
    let dirs = DataDirs::new();
    let router = Router::start(&dirs, &[]);
    let grpc = client(&router, None);
    seeded_collection(&grpc, "e", 20, 3).await;
    let state = || grpc_state(&grpc, "e");
    let before = state().await;

    let upsert = |points: Vec<pb::PointStruct>| pb::UpsertPoints {
        collection_name: "e".into(),
        wait: Some(true),
        points,
        ..Default::default()
    };
    let query = |q: Vec<f32>, limit: Option<u64>| pb::QueryPoints {
        collection_name: "e".into(),
        query: Some(pb::Query::new_nearest(q)),
        limit,
        ..Default::default()
    };
    let collection = |name: &str, size: u64| {
        let mut c = create_request(name);
        if let Some(pb::VectorsConfig {
            config: Some(pb::vectors_config::Config::Params(p)),
        }) = &mut c.vectors_config
        {
            p.size = size;
        }
        c
    };
    let ids = |ids: Vec<u64>| pb::PointsSelector {
        points_selector_one_of: Some(pb::points_selector::PointsSelectorOneOf::Points(
            pb::PointsIdsList {
                ids: ids.into_iter().map(Into::into).collect(),
            },
        )),
    };
    let bad_radius = pb::Filter::must([pb::Condition {
        condition_one_of: Some(pb::condition::ConditionOneOf::Field(pb::FieldCondition {
            key: "loc".into(),
            geo_radius: Some(pb::GeoRadius {
                center: Some(pb::GeoPoint {
                    lat: 200.0,
                    lon: 0.0,
                }),
                radius: 10.0,
            }),
            ..Default::default()
        })),
    }]);
    let cases: Vec<(&str, Call<'_>, &[tonic::Code])> = vec![
        (
            "a NaN in a vector",
            call(grpc.upsert_points(upsert(vec![point(50, vec![f32::NAN; 8], "x", 1)]))),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "an infinity in a vector",
            call(grpc.upsert_points(upsert(vec![point(50, vec![f32::INFINITY; 8], "x", 1)]))),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "an empty vector",
            call(grpc.upsert_points(upsert(vec![point(50, Vec::new(), "x", 1)]))),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "a batch with one bad point among good ones",
            call(grpc.upsert_points(upsert(vec![
                point(51, vec![0.5; 8], "x", 1),
                point(52, vec![0.5; 9], "x", 1),
            ]))),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "an upsert into a missing collection",
            call(grpc.upsert_points(pb::UpsertPoints {
                collection_name: "absent".into(),
                ..upsert(vec![point(50, vec![0.5; 8], "x", 1)])
            })),
            &[tonic::Code::NotFound],
        ),
        (
            "a query of the wrong dimension",
            call(grpc.query(query(vec![0.5; 3], None))),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "a NaN in a query",
            call(grpc.query(query(vec![f32::NAN; 8], None))),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "a limit past every bound",
            call(grpc.query(query(vec![0.5; 8], Some(u64::MAX)))),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "a scroll limit past every bound",
            call(grpc.scroll(pb::ScrollPoints {
                collection_name: "e".into(),
                limit: Some(u32::MAX),
                ..Default::default()
            })),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "a geo radius around latitude 200",
            call(grpc.query(pb::QueryPoints {
                filter: Some(bad_radius.clone()),
                ..query(vec![0.5; 8], None)
            })),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "a collection of dimension 0",
            call(grpc.create_collection(collection("zero", 0))),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "a collection of a billion dimensions",
            call(grpc.create_collection(collection("huge", 1_000_000_000))),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "a collection named ../x",
            call(grpc.create_collection(collection("../x", 8))),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "a delete without a selector",
            call(grpc.delete_points(pb::DeletePoints {
                collection_name: "e".into(),
                wait: Some(true),
                points: None,
                ..Default::default()
            })),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "a payload write selected by an invalid filter",
            call(grpc.set_payload(pb::SetPayloadPoints {
                collection_name: "e".into(),
                wait: Some(true),
                payload: [("k".to_string(), pb::Value::from(1i64))].into(),
                points_selector: Some(pb::PointsSelector {
                    points_selector_one_of: Some(pb::points_selector::PointsSelectorOneOf::Filter(
                        bad_radius.clone(),
                    )),
                }),
                ..Default::default()
            })),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "a field index of an unknown type",
            call(grpc.create_field_index(pb::CreateFieldIndexCollection {
                collection_name: "e".into(),
                wait: Some(true),
                field_name: "city".into(),
                field_type: Some(99),
                ..Default::default()
            })),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "a vector update of the wrong dimension",
            call(grpc.update_vectors(pb::UpdatePointVectors {
                collection_name: "e".into(),
                wait: Some(true),
                points: vec![pb::PointVectors {
                    id: Some(1.into()),
                    vectors: Some(vec![0.5f32; 5].into()),
                }],
                ..Default::default()
            })),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "a recommendation with no examples",
            call(grpc.query(pb::QueryPoints {
                collection_name: "e".into(),
                query: Some(pb::Query::new_recommend(pb::RecommendInput::default())),
                ..Default::default()
            })),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "a matrix of a sample past every bound",
            call(grpc.search_matrix_pairs(pb::SearchMatrixPoints {
                collection_name: "e".into(),
                sample: Some(u64::MAX),
                limit: Some(2),
                ..Default::default()
            })),
            &[tonic::Code::InvalidArgument],
        ),
        (
            "a delete of ids in a missing collection",
            call(grpc.delete_points(pb::DeletePoints {
                collection_name: "absent".into(),
                wait: Some(true),
                points: Some(ids(vec![1])),
                ..Default::default()
            })),
            &[tonic::Code::NotFound],
        ),
    ];
    let mut wrong = Vec::new();
    for (what, call, allowed) in cases {
        let (c, m) = call.await;
        // A gRPC client is not told of a JSON body it never sent.
        if !allowed.contains(&c) || m.contains("JSON body") || m.contains(" at line ") {
            wrong.push(format!("{what}: {c:?} {m}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(state().await, before, "a refused request changed something");
}
