//! Collections end to end on real disk: segments, the optimizer, restarts, filters,
//! payload updates, snapshots and bad input.

use index_core::{PointId, SearchParams};
use payload::{Filter, Payload, PayloadSelector};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use storage::{
    Collection, CollectionConfig, PointSelector, PointWrite, SearchRequest, Storage,
    StorageErrorKind, Update, VectorSelector,
};

pub(crate) const DIM: usize = 8;

pub(crate) fn open(dir: &Path) -> Storage {
    Storage::open(&dir.join("storage"), &dir.join("snapshots")).unwrap()
}

/// Opens again after a drop: the background thread may hold the collection (and its log's
/// lock) for a moment longer.
fn reopen(dir: &Path) -> Storage {
    for _ in 0..100 {
        match Storage::open(&dir.join("storage"), &dir.join("snapshots")) {
            Ok(s) => return s,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    open(dir)
}

/// A collection whose appendable segments seal every `threshold_points` points.
pub(crate) fn config(distance: &str, shards: u32, threshold_points: usize) -> CollectionConfig {
    // Qdrant's indexing_threshold is in KB of vectors.
    let kb = (threshold_points * DIM * 4).div_ceil(1024);
    CollectionConfig::from_json(&json!({
        "vectors": {"size": DIM, "distance": distance},
        "shard_number": shards,
        "hnsw_config": {"m": 16, "ef_construct": 64, "full_scan_threshold": 1},
        "optimizers_config": {"indexing_threshold": kb, "flush_interval_sec": 1},
    }))
    .unwrap()
}

const COLORS: [&str; 4] = ["red", "green", "blue", "black"];

pub(crate) fn random_point(rng: &mut StdRng, id: u64) -> PointWrite {
    let v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut payload = Payload::new();
    payload.insert("color".into(), json!(COLORS[rng.random_range(0..4)]));
    payload.insert("n".into(), json!(rng.random_range(0..100)));
    if rng.random_bool(0.3) {
        payload.insert(
            "tags".into(),
            json!(["a", if rng.random_bool(0.5) { "b" } else { "c" }]),
        );
    }
    PointWrite {
        id: PointId::Num(id),
        vectors: vec![(String::new(), v)],
        payload,
        sparse: Vec::new(),
        multi: Vec::new(),
    }
}

/// What the collection should hold: id → (vector as stored, payload).
pub(crate) type Model = BTreeMap<PointId, (Vec<f32>, Payload)>;

fn model_upsert(model: &mut Model, points: &[PointWrite], distance: quant::Metric) {
    for p in points {
        let mut v = p.vectors[0].1.clone();
        distance.prepare(&mut v);
        model.insert(p.id, (v, p.payload.clone()));
    }
}

pub(crate) fn brute_force(
    model: &Model,
    metric: quant::Metric,
    q: &[f32],
    k: usize,
    filter: Option<&Filter>,
) -> Vec<PointId> {
    let mut q = q.to_vec();
    metric.prepare(&mut q);
    let kernels = quant::kernels();
    let mut all: Vec<(f32, PointId)> = model
        .iter()
        .filter(|(id, (_, p))| {
            filter.is_none_or(|f| {
                f.matches(&payload::PlainPoint {
                    id: **id,
                    payload: Some(p.clone()),
                    vectors: vec![String::new()],
                })
            })
        })
        .map(|(id, (v, _))| (metric.distance(kernels, &q, v), *id))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|(_, id)| id).collect()
}

pub(crate) fn request(q: Vec<f32>, k: usize, exact: bool, filter: Option<Filter>) -> SearchRequest {
    let mut params = SearchParams::top(k);
    params.exact = exact;
    params.hnsw_ef = Some(128);
    SearchRequest {
        vector_name: String::new(),
        query: storage::Query::Nearest(q),
        filter: filter.map(Arc::new),
        params,
        with_payload: PayloadSelector::All,
        with_vector: VectorSelector::Nothing,
        candidates: None,
    }
}

pub(crate) fn ids(hits: &[storage::ScoredPoint]) -> Vec<PointId> {
    hits.iter().map(|h| h.record.id).collect()
}

pub(crate) fn fill(
    c: &Collection,
    rng: &mut StdRng,
    model: &mut Model,
    from: u64,
    n: u64,
    batch: u64,
) {
    let metric = c.config().vectors.get("").unwrap().distance.metric();
    let mut id = from;
    while id < from + n {
        let points: Vec<PointWrite> = (id..(id + batch).min(from + n))
            .map(|i| random_point(rng, i))
            .collect();
        model_upsert(model, &points, metric);
        c.update(Update::Upsert(points), true).unwrap();
        id += batch;
    }
}

#[test]
fn exact_search_over_appendable_sealed_and_indexed_segments_equals_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create("c", config("Cosine", 2, 300)).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut model = Model::new();
    fill(&c, &mut rng, &mut model, 0, 1500, 100);
    c.optimize_now().unwrap();
    // More points after indexing: some replace indexed ones, some are new, some deleted.
    fill(&c, &mut rng, &mut model, 1200, 600, 50);
    let gone: Vec<PointId> = (0..1800).step_by(7).map(PointId::Num).collect();
    c.update(Update::Delete(PointSelector::Ids(gone.clone())), true)
        .unwrap();
    gone.iter().for_each(|id| {
        model.remove(id);
    });
    let stats = c.stats();
    assert!(
        stats.indexed_points > 0,
        "some points must be indexed: {stats:?}"
    );
    assert!(
        stats.segments > 2,
        "points must be spread over several segments: {stats:?}"
    );
    assert_eq!(c.count(None), model.len());
    let mut recall_hits = 0;
    let mut recall_total = 0;
    for qi in 0..50 {
        let q: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
        let truth = brute_force(&model, quant::Metric::Cosine, &q, 10, None);
        let exact = c.search(&request(q.clone(), 10, true, None)).unwrap();
        assert_eq!(
            ids(&exact),
            truth,
            "exact search differs from brute force (query {qi}, seed 7)"
        );
        let approx = c.search(&request(q, 10, false, None)).unwrap();
        let got: HashSet<PointId> = ids(&approx).into_iter().collect();
        assert_eq!(got.len(), approx.len(), "a point returned twice");
        recall_hits += truth.iter().filter(|id| got.contains(id)).count();
        recall_total += truth.len();
    }
    let recall = recall_hits as f64 / recall_total as f64;
    assert!(recall >= 0.95, "recall@10 {recall} below 0.95 (seed 7)");
    store.close().unwrap();
}

/// Runs the optimizer to the end while exact searches for `queries` check every answer
/// against `truths` and the count against `points` (at least three rounds): a point missing
/// or seen twice while segments move fails it.
pub(crate) fn optimize_while_searching(
    c: &Collection,
    queries: &[Vec<f32>],
    truths: &[Vec<PointId>],
    points: usize,
) {
    std::thread::scope(|s| {
        let optimizer = s.spawn(|| c.optimize_now().unwrap());
        let mut rounds = 0;
        while !optimizer.is_finished() || rounds < 3 {
            for (q, truth) in queries.iter().zip(truths) {
                let hits = c.search(&request(q.clone(), 10, true, None)).unwrap();
                assert_eq!(
                    &ids(&hits),
                    truth,
                    "a search during optimization saw a point missing or twice"
                );
                assert_eq!(c.count(None), points);
            }
            rounds += 1;
        }
    });
}

#[test]
fn searches_during_optimization_never_miss_or_repeat_a_point() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create("c", config("Euclid", 1, 200)).unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let mut model = Model::new();
    fill(&c, &mut rng, &mut model, 0, 2000, 200);
    let queries: Vec<Vec<f32>> = (0..20)
        .map(|_| (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let truths: Vec<Vec<PointId>> = queries
        .iter()
        .map(|q| brute_force(&model, quant::Metric::Euclidean, q, 10, None))
        .collect();
    optimize_while_searching(&c, &queries, &truths, 2000);
    assert!(!c.stats().optimizing);
    store.close().unwrap();
}

#[test]
fn restart_replays_the_log_and_loads_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let mut model = Model::new();
    let queries: Vec<Vec<f32>> = (0..10)
        .map(|_| (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    {
        let store = open(dir.path());
        let c = store.create("c", config("Cosine", 3, 250)).unwrap();
        fill(&c, &mut rng, &mut model, 0, 1000, 100);
        c.optimize_now().unwrap();
        fill(&c, &mut rng, &mut model, 900, 300, 30);
        c.update(
            Update::SetPayload {
                payload: json!({"extra": true}).as_object().unwrap().clone(),
                selector: PointSelector::Ids(vec![PointId::Num(5), PointId::Num(950)]),
                key: None,
            },
            true,
        )
        .unwrap();
        for id in [5u64, 950] {
            model
                .get_mut(&PointId::Num(id))
                .unwrap()
                .1
                .insert("extra".into(), json!(true));
        }
        // No close: the store is dropped with part of the state only in the log, as if the
        // process had died (the SIGKILL test in crash.rs does it for real).
        drop(c);
        drop(store);
    }
    let store = reopen(dir.path());
    let c = store.get("c").unwrap();
    assert_eq!(c.count(None), model.len());
    for q in &queries {
        let truth = brute_force(&model, quant::Metric::Cosine, q, 10, None);
        assert_eq!(
            ids(&c.search(&request(q.clone(), 10, true, None)).unwrap()),
            truth
        );
    }
    let all: Vec<PointId> = model.keys().copied().collect();
    let got = c.retrieve(&all, &PayloadSelector::All, &VectorSelector::All);
    assert_eq!(got.len(), model.len());
    for r in got {
        let (v, p) = &model[&r.id];
        assert_eq!(r.payload.as_ref(), Some(p), "payload of {}", r.id);
        let stored = &r.vectors.as_ref().unwrap()[0].1;
        assert!(
            stored.iter().zip(v).all(|(a, b)| (a - b).abs() < 1e-6),
            "vector of {}",
            r.id
        );
    }
    store.close().unwrap();
}

fn random_filter(rng: &mut StdRng) -> Value {
    let cond = |rng: &mut StdRng| match rng.random_range(0..5) {
        0 => json!({"key": "color", "match": {"value": COLORS[rng.random_range(0..4)]}}),
        1 => {
            json!({"key": "color", "match": {"any": [COLORS[rng.random_range(0..4)], COLORS[rng.random_range(0..4)]]}})
        }
        2 => {
            json!({"key": "n", "range": {"gte": rng.random_range(0..60), "lt": rng.random_range(40..100)}})
        }
        3 => json!({"key": "tags", "match": {"value": "b"}}),
        _ => json!({"is_empty": {"key": "tags"}}),
    };
    match rng.random_range(0..3) {
        0 => json!({"must": [cond(rng), cond(rng)]}),
        1 => json!({"should": [cond(rng), cond(rng)], "must_not": [cond(rng)]}),
        _ => json!({"must": cond(rng)}),
    }
}

#[test]
fn filtered_search_and_count_equal_brute_force_with_and_without_payload_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create("c", config("Cosine", 2, 400)).unwrap();
    let mut rng = StdRng::seed_from_u64(21);
    let mut model = Model::new();
    fill(&c, &mut rng, &mut model, 0, 1500, 150);
    c.optimize_now().unwrap();
    fill(&c, &mut rng, &mut model, 1500, 200, 100);
    for round in 0..2 {
        if round == 1 {
            c.create_payload_index("color", json!("keyword")).unwrap();
            c.create_payload_index("n", json!("integer")).unwrap();
            assert_eq!(c.payload_schema()["color"]["data_type"], json!("keyword"));
            // Writes under the indexes: overwrites that change colours, then a delete and a
            // payload update selected by keyword filters, which the index answers without
            // reading payloads (`Filter::indexed_candidates_exact`).
            fill(&c, &mut rng, &mut model, 1200, 400, 100);
            let black = json!({"must": {"key": "color", "match": {"value": "black"}}});
            let deleted = c.count(Some(&Filter::from_json(&black).unwrap()));
            c.update(
                Update::Delete(PointSelector::Filter(Arc::new(
                    Filter::from_json(&black).unwrap(),
                ))),
                true,
            )
            .unwrap();
            let before = model.len();
            model.retain(|_, (_, p)| p.get("color") != Some(&json!("black")));
            assert_eq!(before - model.len(), deleted);
            let blue = json!({"must": {"key": "color", "match": {"any": ["blue"]}}});
            c.update(
                Update::SetPayload {
                    payload: json!({"color": "green"}).as_object().unwrap().clone(),
                    selector: PointSelector::Filter(Arc::new(Filter::from_json(&blue).unwrap())),
                    key: None,
                },
                true,
            )
            .unwrap();
            for (_, p) in model.values_mut() {
                if p.get("color") == Some(&json!("blue")) {
                    p.insert("color".into(), json!("green"));
                }
            }
            assert_eq!(c.count(Some(&Filter::from_json(&blue).unwrap())), 0);
            assert_eq!(c.count(Some(&Filter::from_json(&black).unwrap())), 0);
            // New points of every colour again, so that the filters below split the points.
            fill(&c, &mut rng, &mut model, 1700, 300, 100);
            c.optimize_now().unwrap();
        }
        for i in 0..40 {
            let fj = random_filter(&mut rng);
            let f = Filter::from_json(&fj).unwrap();
            let q: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
            let truth = brute_force(&model, quant::Metric::Cosine, &q, 10, Some(&f));
            let hits = c.search(&request(q, 10, true, Some(f.clone()))).unwrap();
            assert_eq!(ids(&hits), truth, "round {round} filter {i} {fj}");
            let expected = model
                .iter()
                .filter(|(id, (_, p))| {
                    f.matches(&payload::PlainPoint {
                        id: **id,
                        payload: Some(p.clone()),
                        vectors: vec![String::new()],
                    })
                })
                .count();
            assert_eq!(c.count(Some(&f)), expected, "count, filter {fj}");
        }
    }
    store.close().unwrap();
}

#[test]
fn payload_updates_by_ids_and_by_filter() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create("c", config("Dot", 1, 1000)).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let mut model = Model::new();
    fill(&c, &mut rng, &mut model, 0, 100, 50);
    let red = Arc::new(
        Filter::from_json(&json!({"must": {"key": "color", "match": {"value": "red"}}})).unwrap(),
    );
    let reds = c.count(Some(&red));
    c.update(
        Update::SetPayload {
            payload: json!({"flag": 1}).as_object().unwrap().clone(),
            selector: PointSelector::Filter(red.clone()),
            key: None,
        },
        true,
    )
    .unwrap();
    let flagged =
        Filter::from_json(&json!({"must": {"key": "flag", "match": {"value": 1}}})).unwrap();
    assert_eq!(c.count(Some(&flagged)), reds);
    c.update(
        Update::OverwritePayload {
            payload: json!({"only": "this"}).as_object().unwrap().clone(),
            selector: PointSelector::Ids(vec![PointId::Num(1)]),
        },
        true,
    )
    .unwrap();
    let r = c.retrieve(
        &[PointId::Num(1)],
        &PayloadSelector::All,
        &VectorSelector::Nothing,
    );
    assert_eq!(
        Value::Object(r[0].payload.clone().unwrap()),
        json!({"only": "this"})
    );
    c.update(
        Update::DeletePayload {
            keys: vec!["color".into()],
            selector: PointSelector::Ids(vec![PointId::Num(2)]),
        },
        true,
    )
    .unwrap();
    let r = c.retrieve(
        &[PointId::Num(2)],
        &PayloadSelector::All,
        &VectorSelector::Nothing,
    );
    assert!(!r[0].payload.as_ref().unwrap().contains_key("color"));
    c.update(Update::ClearPayload(PointSelector::Filter(red)), true)
        .unwrap();
    assert_eq!(c.count(Some(&flagged)), 0);
    c.update(
        Update::Delete(PointSelector::Filter(Arc::new(
            Filter::from_json(&json!({"must": {"key": "n", "range": {"lt": 50}}})).unwrap(),
        ))),
        true,
    )
    .unwrap();
    let below = Filter::from_json(&json!({"must": {"key": "n", "range": {"lt": 50}}})).unwrap();
    assert_eq!(c.count(Some(&below)), 0);
    // Scroll walks ids in order with a cursor and sees every remaining point once.
    let mut seen = Vec::new();
    let mut from = None;
    loop {
        let page = c.scroll(
            from,
            7,
            None,
            &PayloadSelector::Nothing,
            &VectorSelector::Nothing,
        );
        seen.extend(page.points.iter().map(|r| r.id));
        match page.next {
            Some(n) => from = Some(n),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted);
    assert_eq!(seen.len(), c.count(None));
    store.close().unwrap();
}

#[test]
fn snapshot_restore_gives_identical_points_and_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create("c", config("Manhattan", 2, 300)).unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let mut model = Model::new();
    fill(&c, &mut rng, &mut model, 0, 900, 100);
    c.optimize_now().unwrap();
    fill(&c, &mut rng, &mut model, 800, 200, 100);
    c.create_payload_index("color", json!("keyword")).unwrap();
    let snap = store.create_snapshot("c").unwrap();
    assert!(snap.size > 0 && snap.checksum.as_ref().is_some_and(|s| s.len() == 64));
    assert_eq!(store.list_snapshots("c").unwrap(), vec![snap.clone()]);
    // Writes after the snapshot must not be in the restored collection.
    c.update(
        Update::Delete(PointSelector::Ids(vec![PointId::Num(1), PointId::Num(2)])),
        true,
    )
    .unwrap();
    let path = store.snapshot_path("c", &snap.name).unwrap();
    store
        .recover("restored", &path, snap.checksum.as_deref())
        .unwrap();
    let r = store.get("restored").unwrap();
    let all: Vec<PointId> = model.keys().copied().collect();
    let got = r.retrieve(&all, &PayloadSelector::All, &VectorSelector::All);
    assert_eq!(got.len(), model.len());
    for rec in &got {
        assert_eq!(rec.payload.as_ref(), Some(&model[&rec.id].1));
        assert_eq!(rec.vectors.as_ref().unwrap()[0].1, model[&rec.id].0);
    }
    assert_eq!(r.payload_schema()["color"]["data_type"], json!("keyword"));
    // The restored collection takes writes and survives a restart.
    r.update(
        Update::Delete(PointSelector::Ids(vec![PointId::Num(3)])),
        true,
    )
    .unwrap();
    store.close().unwrap();
    drop((c, r, store));
    let store = reopen(dir.path());
    assert_eq!(store.get("restored").unwrap().count(None), model.len() - 1);
    // A damaged snapshot is refused whole and changes nothing.
    let bytes = std::fs::read(&path).unwrap();
    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x40;
    let bad_path = dir.path().join("snapshots/damaged.snapshot");
    std::fs::write(&bad_path, damaged).unwrap();
    assert!(store.recover("restored", &bad_path, None).is_err());
    assert_eq!(store.get("restored").unwrap().count(None), model.len() - 1);
    store.delete_snapshot("c", &snap.name).unwrap();
    assert!(store.list_snapshots("c").unwrap().is_empty());
    store.close().unwrap();
}

#[test]
fn bad_input_is_refused_whole_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create("c", config("Cosine", 2, 1000)).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let mut model = Model::new();
    fill(&c, &mut rng, &mut model, 0, 10, 10);
    let good = random_point(&mut rng, 100);
    let mut wrong_dim = random_point(&mut rng, 101);
    wrong_dim.vectors[0].1.pop();
    let mut nan = random_point(&mut rng, 102);
    nan.vectors[0].1[3] = f32::NAN;
    let mut unknown = random_point(&mut rng, 103);
    unknown.vectors[0].0 = "nope".into();
    let mut huge = random_point(&mut rng, 104);
    huge.payload.insert(
        "blob".into(),
        json!("x".repeat(storage::MAX_PAYLOAD_BYTES + 1)),
    );
    for bad in [wrong_dim, nan, unknown, huge] {
        let err = c
            .update(Update::Upsert(vec![good.clone(), bad]), true)
            .unwrap_err();
        assert_eq!(err.kind(), StorageErrorKind::InvalidInput, "{err}");
        assert_eq!(
            c.count(None),
            10,
            "nothing of a refused batch may be applied"
        );
    }
    assert_eq!(
        store.get("missing").unwrap_err().kind(),
        StorageErrorKind::NotFound
    );
    assert_eq!(
        store
            .create("c", config("Cosine", 1, 10))
            .unwrap_err()
            .kind(),
        StorageErrorKind::Conflict
    );
    assert_eq!(
        store
            .create("../x", config("Cosine", 1, 10))
            .unwrap_err()
            .kind(),
        StorageErrorKind::InvalidInput
    );
    let bad_key = Update::SetPayload {
        payload: Payload::new(),
        selector: PointSelector::Ids(vec![PointId::Num(1)]),
        key: Some("a[".into()),
    };
    assert_eq!(
        c.update(bad_key, true).unwrap_err().kind(),
        StorageErrorKind::InvalidInput
    );
    let wrong_query = c
        .search(&request(vec![0.0; DIM + 1], 10, false, None))
        .unwrap_err();
    assert_eq!(wrong_query.kind(), StorageErrorKind::InvalidInput);
    for bad in [
        json!({"vectors": {"size": 0, "distance": "Cosine"}}),
        json!({"vectors": {"size": 4, "distance": "Hamming"}}),
        json!({"vectors": {"size": 4, "distance": "Dot"}, "shard_number": 0}),
        json!({"vectors": {"size": 4, "distance": "Dot"}, "unknown": 1}),
    ] {
        assert!(CollectionConfig::from_json(&bad).is_err(), "{bad}");
    }
    assert!(store.delete("c").unwrap());
    assert!(!store.delete("c").unwrap());
    store.close().unwrap();
}

#[test]
fn named_vectors_and_missing_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let config = CollectionConfig::from_json(&json!({
        "vectors": {"a": {"size": 2, "distance": "Dot"}, "b": {"size": 3, "distance": "Euclid"}},
        "optimizers_config": {"indexing_threshold": 1},
    }))
    .unwrap();
    let c = store.create("c", config).unwrap();
    let p = |id: u64, a: Option<Vec<f32>>, b: Option<Vec<f32>>| PointWrite {
        id: PointId::Num(id),
        vectors: a
            .map(|v| ("a".to_string(), v))
            .into_iter()
            .chain(b.map(|v| ("b".to_string(), v)))
            .collect(),
        payload: Payload::new(),
        sparse: Vec::new(),
        multi: Vec::new(),
    };
    let points: Vec<PointWrite> = (0..300u64)
        .map(|i| {
            let x = i as f32;
            p(
                i,
                (i % 3 != 0).then(|| vec![x, 1.0]),
                (i % 2 == 0).then(|| vec![x, 0.0, 0.0]),
            )
        })
        .collect();
    c.update(Update::Upsert(points), true).unwrap();
    c.optimize_now().unwrap();
    let mut req = request(vec![1.0, 0.0], 5, true, None);
    req.vector_name = "a".into();
    let hits = c.search(&req).unwrap();
    assert_eq!(ids(&hits), [299, 298, 296, 295, 293].map(PointId::Num));
    let mut req = request(vec![10.2, 0.0, 0.0], 3, false, None);
    req.vector_name = "b".into();
    let hits = c.search(&req).unwrap();
    assert_eq!(ids(&hits), [10, 12, 8].map(PointId::Num));
    assert!(
        (hits[0].score - 0.2).abs() < 1e-5,
        "Euclid score is the distance: {}",
        hits[0].score
    );
    let has_a = Filter::from_json(&json!({"must": {"has_vector": "a"}})).unwrap();
    assert_eq!(c.count(Some(&has_a)), 200);
    store.close().unwrap();
}

#[test]
fn ivf_collections_index_search_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(17);
    let mut model = Model::new();
    let queries: Vec<Vec<f32>> = (0..30)
        .map(|_| (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    for encoding in [
        json!({"kind": "flat"}),
        json!({"kind": "sq8"}),
        json!({"kind": "pq_fast_scan", "m": 8}),
        json!({"kind": "rabitq", "bits": 1}),
    ] {
        let name = format!("ivf-{}", encoding["kind"].as_str().unwrap());
        let store = reopen(dir.path());
        let config = CollectionConfig::from_json(&json!({
            "vectors": {"size": DIM, "distance": "Cosine"},
            "index": {"type": "ivf", "encoding": encoding, "nprobe": 40, "oversampling": 8},
            "optimizers_config": {"indexing_threshold": (1000 * DIM * 4) / 1024},
        }))
        .unwrap();
        let c = store.create(&name, config).unwrap();
        model.clear();
        fill(&c, &mut rng, &mut model, 0, 3000, 500);
        c.optimize_now().unwrap();
        assert!(c.stats().indexed_points >= 2000, "{name}: {:?}", c.stats());
        let check = |c: &Collection, when: &str| {
            let mut hits = 0;
            for q in &queries {
                let truth = brute_force(&model, quant::Metric::Cosine, q, 10, None);
                assert_eq!(
                    ids(&c.search(&request(q.clone(), 10, true, None)).unwrap()),
                    truth,
                    "{name} exact {when}"
                );
                let got: HashSet<PointId> =
                    ids(&c.search(&request(q.clone(), 10, false, None)).unwrap())
                        .into_iter()
                        .collect();
                hits += truth.iter().filter(|id| got.contains(id)).count();
            }
            let recall = hits as f64 / (10 * queries.len()) as f64;
            assert!(recall >= 0.95, "{name} recall@10 {recall} {when} (seed 17)");
        };
        check(&c, "before restart");
        let r = c.retrieve(
            &[PointId::Num(2999)],
            &PayloadSelector::Nothing,
            &VectorSelector::All,
        );
        let stored = &r[0].vectors.as_ref().unwrap()[0].1;
        let want = &model[&PointId::Num(2999)].0;
        assert!(
            stored.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{name}: stored vector {stored:?} vs {want:?}"
        );
        store.close().unwrap();
        drop((c, store));
        let store = reopen(dir.path());
        check(&store.get(&name).unwrap(), "after restart");
        store.close().unwrap();
    }
    for bad_index in [
        json!({"type": "ivf", "nprobe": 0}),
        json!({"type": "ivf", "bogus": 1}),
        json!({"type": "annoy"}),
        json!({"type": "ivf", "encoding": {"kind": "pq", "m": 99}}),
        json!({"type": "ivf", "encoding": {"kind": "rabitq", "bits": 9}}),
    ] {
        let bad = CollectionConfig::from_json(
            &json!({"vectors": {"size": DIM, "distance": "Cosine"}, "index": bad_index}),
        );
        assert!(bad.is_err(), "{bad_index} must be refused: {bad:?}");
    }
    let with_quant = CollectionConfig::from_json(&json!({
        "vectors": {"size": DIM, "distance": "Cosine"},
        "index": {"type": "ivf"},
        "quantization_config": {"scalar": {"type": "int8"}},
    }));
    assert!(with_quant.is_err());
    let manhattan_rabitq = CollectionConfig::from_json(&json!({
        "vectors": {"size": DIM, "distance": "Manhattan"},
        "index": {"type": "ivf", "encoding": {"kind": "rabitq", "bits": 1}},
    }));
    assert!(manhattan_rabitq.is_err(), "{manhattan_rabitq:?}");
}

#[test]
fn cagra_collections_index_grow_by_rebuilds_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(29);
    let mut model = Model::new();
    let queries: Vec<Vec<f32>> = (0..30)
        .map(|_| (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let store = reopen(dir.path());
    let config = CollectionConfig::from_json(&json!({
        "vectors": {"size": DIM, "distance": "Cosine"},
        "index": {"type": "cagra", "graph_degree": 16, "intermediate_graph_degree": 32},
        "optimizers_config": {"indexing_threshold": (1000 * DIM * 4) / 1024},
    }))
    .unwrap();
    let c = store.create("cagra", config).unwrap();
    let check = |c: &Collection, when: &str, model: &Model| {
        let mut hits = 0;
        for q in &queries {
            let truth = brute_force(model, quant::Metric::Cosine, q, 10, None);
            assert_eq!(
                ids(&c.search(&request(q.clone(), 10, true, None)).unwrap()),
                truth,
                "exact {when}"
            );
            let got: HashSet<PointId> =
                ids(&c.search(&request(q.clone(), 10, false, None)).unwrap())
                    .into_iter()
                    .collect();
            hits += truth.iter().filter(|id| got.contains(id)).count();
        }
        let recall = hits as f64 / (10 * queries.len()) as f64;
        assert!(recall >= 0.95, "recall@10 {recall} {when} (seed 29)");
    };
    fill(&c, &mut rng, &mut model, 0, 3000, 500);
    c.optimize_now().unwrap();
    assert!(c.stats().indexed_points >= 2000, "{:?}", c.stats());
    check(&c, "after the first build", &model);
    // More rows: appended to the indexed segment's tail, then a rebuild over all of them.
    fill(&c, &mut rng, &mut model, 3000, 1500, 500);
    c.optimize_now().unwrap();
    assert!(c.stats().indexed_points >= 4000, "{:?}", c.stats());
    check(&c, "after growing", &model);
    let r = c.retrieve(
        &[PointId::Num(4321)],
        &PayloadSelector::Nothing,
        &VectorSelector::All,
    );
    let stored = &r[0].vectors.as_ref().unwrap()[0].1;
    let want = &model[&PointId::Num(4321)].0;
    assert!(
        stored.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
        "{stored:?} vs {want:?}"
    );
    store.close().unwrap();
    drop((c, store));
    let store = reopen(dir.path());
    check(&store.get("cagra").unwrap(), "after restart", &model);
    store.close().unwrap();
    for bad_index in [
        json!({"type": "cagra", "graph_degree": 0}),
        json!({"type": "cagra", "graph_degree": 64, "intermediate_graph_degree": 32}),
        json!({"type": "cagra", "bogus": 1}),
        json!({"type": "cagra", "storage": "pq"}),
    ] {
        let bad = CollectionConfig::from_json(
            &json!({"vectors": {"size": DIM, "distance": "Cosine"}, "index": bad_index}),
        );
        assert!(bad.is_err(), "{bad_index} must be refused: {bad:?}");
    }
    let with_quant = CollectionConfig::from_json(&json!({
        "vectors": {"size": DIM, "distance": "Cosine"},
        "index": {"type": "cagra"},
        "quantization_config": {"scalar": {"type": "int8"}},
    }));
    assert!(with_quant.is_err());
}

#[test]
fn snapshots_taken_while_the_optimizer_runs_are_complete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create("c", config("Cosine", 2, 200)).unwrap();
    let mut rng = StdRng::seed_from_u64(23);
    let mut model = Model::new();
    fill(&c, &mut rng, &mut model, 0, 3000, 300);
    let snaps = std::thread::scope(|s| {
        let optimizer = s.spawn(|| c.optimize_now().unwrap());
        let mut snaps = Vec::new();
        while !optimizer.is_finished() || snaps.len() < 2 {
            snaps.push(store.create_snapshot("c").unwrap());
        }
        snaps
    });
    for (i, snap) in snaps.iter().enumerate() {
        let path = store.snapshot_path("c", &snap.name).unwrap();
        let name = format!("restored-{i}");
        store
            .recover(&name, &path, snap.checksum.as_deref())
            .unwrap();
        let r = store.get(&name).unwrap();
        assert_eq!(
            r.count(None),
            model.len(),
            "snapshot {i} of {}",
            snaps.len()
        );
        let q: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
        let truth = brute_force(&model, quant::Metric::Cosine, &q, 10, None);
        assert_eq!(
            ids(&r.search(&request(q, 10, true, None)).unwrap()),
            truth,
            "snapshot {i}"
        );
    }
    store.close().unwrap();
}

#[test]
fn vector_updates_and_conditional_upserts_keep_the_rest_and_replay_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let config = CollectionConfig::from_json(&json!({
        "vectors": {"a": {"size": 2, "distance": "Dot"}, "b": {"size": 3, "distance": "Euclid"}},
        "shard_number": 2,
    }))
    .unwrap();
    let c = store.create("c", config).unwrap();
    let point = |id: u64, vectors: Vec<(&str, Vec<f32>)>, tag: &str| PointWrite {
        id: PointId::Num(id),
        vectors: vectors
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
        payload: json!({"tag": tag}).as_object().unwrap().clone(),
        sparse: Vec::new(),
        multi: Vec::new(),
    };
    let both = |i: u64| vec![("a", vec![i as f32, 1.0]), ("b", vec![i as f32, 0.0, 0.0])];
    let points: Vec<PointWrite> = (0..20).map(|i| point(i, both(i), "old")).collect();
    c.update(Update::Upsert(points), true).unwrap();
    let tag = |t: &str| {
        Arc::new(
            Filter::from_json(&json!({"must": {"key": "tag", "match": {"value": t}}})).unwrap(),
        )
    };

    // Replace `b` of 1 and 2 (2 twice: the second edit applies to the first's result), and
    // `a` of 3 only where the filter passes (it does not); 99 does not exist.
    let r = c.update(
        Update::UpdateVectors {
            points: vec![
                point(1, vec![("b", vec![9.0, 9.0, 9.0])], ""),
                point(2, vec![("b", vec![8.0, 8.0, 8.0])], ""),
                point(99, vec![("b", vec![1.0, 1.0, 1.0])], ""),
                point(2, vec![("a", vec![7.0, 7.0])], ""),
            ],
            filter: None,
        },
        true,
    );
    assert!(matches!(r.unwrap_err().kind(), StorageErrorKind::NotFound));
    c.update(
        Update::UpdateVectors {
            points: vec![point(3, vec![("a", vec![5.0, 5.0])], "")],
            filter: Some(tag("new")),
        },
        true,
    )
    .unwrap();
    // Drop `a` of 4 and 5 by ids.
    c.update(
        Update::DeleteVectors {
            selector: PointSelector::Ids(vec![PointId::Num(4), PointId::Num(5)]),
            names: vec!["a".into()],
        },
        true,
    )
    .unwrap();
    // Insert-only leaves 6 alone and adds 30; update-only replaces 7 and skips 31; a filtered
    // upsert replaces nothing tagged "old" and adds 32.
    use storage::UpsertMode;
    for (mode, filter, id_existing, id_new) in [
        (UpsertMode::InsertOnly, None, 6, 30),
        (UpsertMode::UpdateOnly, None, 7, 31),
        (UpsertMode::Upsert, Some(tag("new")), 8, 32),
    ] {
        c.update(
            Update::ConditionalUpsert {
                points: vec![
                    point(id_existing, vec![("a", vec![0.5, 0.5])], "new"),
                    point(id_new, vec![("a", vec![0.5, 0.5])], "new"),
                ],
                mode,
                filter,
            },
            true,
        )
        .unwrap();
    }
    let check = |c: &Collection| {
        let get = |id: u64| {
            c.retrieve(
                &[PointId::Num(id)],
                &PayloadSelector::All,
                &VectorSelector::All,
            )
            .pop()
        };
        let vectors = |id: u64| -> BTreeMap<String, Vec<f32>> {
            get(id).unwrap().vectors.unwrap().into_iter().collect()
        };
        let tag_of = |id: u64| get(id).unwrap().payload.unwrap()["tag"].clone();
        assert_eq!(vectors(1)["b"], vec![9.0, 9.0, 9.0]);
        assert_eq!(vectors(1)["a"], vec![1.0, 1.0]);
        assert_eq!(vectors(2)["b"], vec![8.0, 8.0, 8.0]);
        assert_eq!(vectors(2)["a"], vec![7.0, 7.0]);
        assert_eq!(tag_of(2), json!("old"));
        assert_eq!(vectors(3)["a"], vec![3.0, 1.0], "the filter did not pass");
        assert!(!vectors(4).contains_key("a") && vectors(4).contains_key("b"));
        assert_eq!(
            tag_of(6),
            json!("old"),
            "insert_only leaves an existing point"
        );
        assert_eq!(tag_of(30), json!("new"));
        assert_eq!(
            tag_of(7),
            json!("new"),
            "update_only replaces an existing point"
        );
        assert!(get(31).is_none(), "update_only inserts nothing");
        assert_eq!(tag_of(8), json!("old"), "the update filter did not pass");
        assert_eq!(tag_of(32), json!("new"));
        assert!(get(99).is_none());
    };
    check(&c);
    // Dropped without closing: the next open replays the log.
    drop(c);
    drop(store);
    let store = reopen(dir.path());
    check(&store.get("c").unwrap());
    store.close().unwrap();
}

#[test]
fn a_batch_resolves_each_update_after_the_ones_before_it_and_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let config = CollectionConfig::from_json(&json!({
        "vectors": {"a": {"size": 2, "distance": "Dot"}, "b": {"size": 2, "distance": "Dot"}},
        "shard_number": 3,
    }))
    .unwrap();
    let c = store.create("c", config).unwrap();
    let point = |id: u64, tag: &str| PointWrite {
        id: PointId::Num(id),
        vectors: vec![
            ("a".into(), vec![id as f32, 1.0]),
            ("b".into(), vec![1.0, id as f32]),
        ],
        payload: json!({"tag": tag}).as_object().unwrap().clone(),
        sparse: Vec::new(),
        multi: Vec::new(),
    };
    let tag = |t: &str| {
        Arc::new(
            Filter::from_json(&json!({"must": {"key": "tag", "match": {"value": t}}})).unwrap(),
        )
    };
    let ids = |v: &[u64]| PointSelector::Ids(v.iter().map(|&i| PointId::Num(i)).collect());
    c.update(
        Update::Upsert((0..10).map(|i| point(i, "old")).collect()),
        true,
    )
    .unwrap();
    let payload = |v: Value| v.as_object().unwrap().clone();

    // Each update sees what the ones before it left: the filter of the second matches the
    // points the first wrote (and only them), the third edits a payload the second set, the
    // fourth removes a vector of a point the first inserted, the fifth deletes by a tag the
    // second gave, and the sixth, an insert-only upsert, adds back a point the fifth deleted.
    c.update(
        Update::Batch(vec![
            Update::Upsert(vec![point(20, "new"), point(21, "new"), point(3, "new")]),
            Update::SetPayload {
                payload: payload(json!({"seen": 1})),
                selector: PointSelector::Filter(tag("new")),
                key: None,
            },
            Update::SetPayload {
                payload: payload(json!({"tag": "gone"})),
                selector: PointSelector::Filter(Arc::new(
                    Filter::from_json(&json!({"must": {"key": "seen", "match": {"value": 1}}, "must_not": {"has_id": [21]}}))
                        .unwrap(),
                )),
                key: None,
            },
            Update::DeleteVectors {
                selector: ids(&[21]),
                names: vec!["a".into()],
            },
            Update::Delete(PointSelector::Filter(tag("gone"))),
            Update::ConditionalUpsert {
                points: vec![point(20, "back"), point(21, "not written")],
                mode: storage::UpsertMode::InsertOnly,
                filter: None,
            },
        ]),
        true,
    )
    .unwrap();
    let check = |c: &Collection| {
        let get = |id: u64| {
            c.retrieve(
                &[PointId::Num(id)],
                &PayloadSelector::All,
                &VectorSelector::All,
            )
            .pop()
        };
        assert!(
            get(3).is_none(),
            "3 was tagged new, then gone, then deleted"
        );
        let p20 = get(20).unwrap();
        assert_eq!(p20.payload.unwrap(), payload(json!({"tag": "back"})));
        let p21 = get(21).unwrap();
        assert_eq!(
            p21.payload.unwrap(),
            payload(json!({"tag": "new", "seen": 1}))
        );
        let names: Vec<String> = p21.vectors.unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["b"]);
        assert_eq!(
            get(4).unwrap().payload.unwrap(),
            payload(json!({"tag": "old"}))
        );
        assert_eq!(c.count(None), 11);
    };
    check(&c);

    // A later update naming a point an earlier one deleted fails the whole batch: nothing of
    // it is applied, not even the updates before it.
    let r = c.update(
        Update::Batch(vec![
            Update::Upsert(vec![point(50, "x")]),
            Update::Delete(ids(&[4])),
            Update::SetPayload {
                payload: payload(json!({"k": 1})),
                selector: ids(&[4]),
                key: None,
            },
        ]),
        true,
    );
    assert!(matches!(r.unwrap_err().kind(), StorageErrorKind::NotFound));
    check(&c);
    // Bounds: no batch in a batch, no more than the limit of updates.
    let nested = c.update(Update::Batch(vec![Update::Batch(vec![])]), true);
    assert!(matches!(
        nested.unwrap_err().kind(),
        StorageErrorKind::InvalidInput
    ));
    let many = (0..=storage::MAX_BATCH_OPERATIONS)
        .map(|_| Update::Delete(ids(&[1])))
        .collect();
    assert!(c.update(Update::Batch(many), true).is_err());
    check(&c);

    // Dropped without closing: the batch's one record replays to the same state.
    drop(c);
    drop(store);
    let store = reopen(dir.path());
    check(&store.get("c").unwrap());
    store.close().unwrap();
}

#[test]
fn a_full_snapshot_restores_every_collection_and_alias_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut rng = StdRng::seed_from_u64(9);
    let everything = |c: &Collection| {
        c.scroll(
            None,
            10_000,
            None,
            &PayloadSelector::All,
            &VectorSelector::All,
        )
        .points
    };
    for (name, shards) in [("a", 1), ("b", 3)] {
        let c = store.create(name, config("Dot", shards, 40)).unwrap();
        let points: Vec<PointWrite> = (0..150).map(|i| random_point(&mut rng, i)).collect();
        c.update(Update::Upsert(points), true).unwrap();
    }
    store
        .change_aliases(&[storage::AliasChange::Create {
            collection: "b".into(),
            alias: "b_live".into(),
        }])
        .unwrap();
    let want_a = everything(&store.get("a").unwrap());
    let want_b = everything(&store.get("b").unwrap());
    let desc = store.create_full_snapshot().unwrap();
    let archive = store.full_snapshot_path(&desc.name).unwrap();
    assert_eq!(store.list_full_snapshots(), vec![desc.clone()]);
    assert_eq!(
        storage::archive::sha256_file(&archive).unwrap(),
        desc.checksum.clone().unwrap()
    );
    let kept = dir.path().join("full.snapshot");
    std::fs::copy(&archive, &kept).unwrap();
    store.delete_full_snapshot(&desc.name).unwrap();
    assert!(store.list_full_snapshots().is_empty());
    assert!(store.full_snapshot_path("../a").is_err());

    store.delete("a").unwrap();
    store
        .get("b")
        .unwrap()
        .update(
            Update::Delete(PointSelector::Ids(vec![PointId::Num(3)])),
            true,
        )
        .unwrap();
    // Without force the existing `b` is kept; `a` comes back.
    assert_eq!(store.recover_full(&kept, false).unwrap(), vec!["a"]);
    assert_eq!(everything(&store.get("a").unwrap()), want_a);
    assert_eq!(everything(&store.get("b").unwrap()).len(), want_b.len() - 1);
    // With force both are the snapshot's, and so is the alias.
    assert_eq!(store.recover_full(&kept, true).unwrap(), vec!["a", "b"]);
    assert_eq!(everything(&store.get("b_live").unwrap()), want_b);
    store.close().unwrap();
    drop(store);
    let store = reopen(dir.path());
    assert_eq!(everything(&store.get("a").unwrap()), want_a);
    assert_eq!(everything(&store.get("b_live").unwrap()), want_b);
    // A damaged archive changes nothing.
    let mut bytes = std::fs::read(&kept).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let broken = dir.path().join("broken.snapshot");
    std::fs::write(&broken, bytes).unwrap();
    assert!(store.recover_full(&broken, true).is_err());
    assert_eq!(everything(&store.get("a").unwrap()), want_a);
    store.close().unwrap();
}

#[test]
fn facet_counts_each_value_once_per_point_under_a_filter() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create("c", config("Dot", 1, 1_000)).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let points: Vec<PointWrite> = (0..60u64)
        .map(|i| {
            let mut p = random_point(&mut rng, i);
            p.payload = json!({"t": ["a", if i % 3 == 0 { "b" } else { "a" }, 1.5, i % 2 == 0], "k": i % 4})
                .as_object()
                .unwrap()
                .clone();
            p
        })
        .collect();
    c.update(Update::Upsert(points), true).unwrap();
    let key = payload::KeyPath::parse("t").unwrap();
    let mut counts: Vec<(String, usize)> = c.shards()[0]
        .facet_counts(&key, None)
        .into_iter()
        .map(|(v, n)| (v.to_string(), n))
        .collect();
    counts.sort();
    // "a" once per point however often it appears; 1.5 is not a facet value.
    assert_eq!(
        counts,
        [("\"a\"", 60), ("\"b\"", 20), ("false", 30), ("true", 30)]
            .map(|(v, n)| (v.to_string(), n))
    );
    let k0 = Filter::from_json(&json!({"must": {"key": "k", "match": {"value": 0}}})).unwrap();
    let mut counts = c.shards()[0].facet_counts(&key, Some(&k0));
    counts.sort_by_key(|(v, _)| v.to_string());
    assert_eq!(counts.iter().find(|(v, _)| v == "b").map(|x| x.1), Some(5));
    assert_eq!(
        counts.iter().find(|(v, _)| *v == json!(true)).map(|x| x.1),
        Some(15)
    );
    store.close().unwrap();
}

#[test]
fn candidate_searches_score_exactly_the_candidates_that_exist_and_pass() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create("c", config("Euclid", 2, 300)).unwrap();
    let mut rng = StdRng::seed_from_u64(33);
    let mut model = Model::new();
    fill(&c, &mut rng, &mut model, 0, 1200, 100);
    c.optimize_now().unwrap();
    // Plain rows beside the graphs, and deleted points among the candidates.
    fill(&c, &mut rng, &mut model, 1100, 300, 50);
    let gone: Vec<PointId> = (0..1400).step_by(11).map(PointId::Num).collect();
    c.update(Update::Delete(PointSelector::Ids(gone.clone())), true)
        .unwrap();
    gone.iter().for_each(|id| {
        model.remove(id);
    });
    assert!(c.stats().indexed_points > 0);
    let kernels = quant::kernels();
    for round in 0..30 {
        // Ids that exist, were deleted or never were (up to 1,600), some given twice.
        let mut cands: Vec<PointId> = (0..rng.random_range(1..200))
            .map(|_| PointId::Num(rng.random_range(0..1600)))
            .collect();
        cands.extend_from_slice(&cands.clone()[..cands.len() / 3]);
        let filter = (round % 2 == 1).then(|| Filter::from_json(&random_filter(&mut rng)).unwrap());
        let q: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
        let k = rng.random_range(1..40);
        // The truth: every candidate that exists and passes, measured by brute force.
        let keep = Filter::has_id(cands.iter().copied());
        let within = filter.as_ref().map_or(keep.clone(), |f| f.merged(&keep));
        let truth = brute_force(&model, quant::Metric::Euclidean, &q, k, Some(&within));
        let mut req = request(q.clone(), k, false, filter.clone());
        req.candidates = Some(cands.clone().into());
        let hits = c.search(&req).unwrap();
        assert_eq!(ids(&hits), truth, "round {round}: candidates {cands:?}");
        for h in &hits {
            let v = &model[&h.record.id].0;
            let want = kernels.l2sq_f32(&q, v).sqrt();
            assert!(
                (h.score - want).abs() <= 1e-4 * want.max(1.0),
                "round {round}: point {:?} scored {} against {want}",
                h.record.id,
                h.score
            );
            assert!(
                h.record.payload.is_some(),
                "the payload asked for comes back"
            );
        }
        // A score bound keeps only the candidates within it.
        if let Some(mid) = hits.get(hits.len() / 2) {
            let mut bounded = request(q.clone(), k, false, filter.clone());
            bounded.candidates = Some(cands.clone().into());
            bounded.params.max_distance = Some(mid.distance);
            let got = c.search(&bounded).unwrap();
            assert_eq!(ids(&got), ids(&hits[..=hits.len() / 2]), "round {round}");
        }
        // Examples scored over the candidates equal an exact example search restricted to
        // them by a filter (the scan that scores every passing point).
        let positive: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
        let negative: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
        let examples = storage::Query::Examples(storage::ExampleQuery::Recommend {
            positive: vec![positive],
            negative: vec![negative],
            strategy: storage::RecommendStrategy::BestScore,
        });
        let mut by_cands = request(q.clone(), k, false, filter.clone());
        by_cands.query = examples.clone();
        by_cands.candidates = Some(cands.clone().into());
        let mut by_filter = request(q, k, true, Some(within));
        by_filter.query = examples;
        let a = c.search(&by_cands).unwrap();
        let b = c.search(&by_filter).unwrap();
        let scores = |h: &[storage::ScoredPoint]| -> Vec<(PointId, f32)> {
            h.iter().map(|h| (h.record.id, h.score)).collect()
        };
        assert_eq!(
            scores(&a),
            scores(&b),
            "round {round}: examples over candidates"
        );
    }
    store.close().unwrap();
}

/// A checkpoint that lists one point twice, or gives two points one row of an indexed
/// segment, is refused at open: either would leave a point served with another's vectors (a
/// stale row live beside the current one). The fuzz target `checkpoint` looks for the same.
#[test]
fn a_checkpoint_listing_a_point_twice_or_sharing_a_row_is_refused() {
    for indexed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            let c = store.create("c", config("Dot", 1, 2)).unwrap();
            let n = if indexed { 40 } else { 2 };
            let points = (1000..1000 + n)
                .map(|i| PointWrite {
                    id: PointId::Num(i),
                    vectors: vec![(String::new(), vec![i as f32; DIM])],
                    payload: Payload::new(),
                    sparse: Vec::new(),
                    multi: Vec::new(),
                })
                .collect();
            c.update(Update::Upsert(points), true).unwrap();
            if indexed {
                c.optimize_now().unwrap();
            }
            drop(c);
            store.close().unwrap();
        }
        let path = dir.path().join("storage/collections/c/shard-0/state.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        // A point's entry starts [0: numeric id][id u64 LE][location tag: 0 a graph row, 1 inline].
        let tag = u8::from(!indexed);
        let entry = |id: u64| {
            let mut e = vec![0u8];
            e.extend(id.to_le_bytes());
            e.push(tag);
            e
        };
        let find = |pattern: &[u8]| {
            bytes
                .windows(pattern.len())
                .position(|w| w == pattern)
                .unwrap_or_else(|| panic!("no entry {pattern:?} in the checkpoint"))
        };
        let (first, second) = (find(&entry(1000)), find(&entry(1001)));
        if indexed {
            // [.. tag][segment u64][row u32]: the second point takes the first one's row.
            let row: Vec<u8> = bytes[first + 18..first + 22].to_vec();
            bytes[second + 18..second + 22].copy_from_slice(&row);
        } else {
            bytes[second + 1..second + 9].copy_from_slice(&1000u64.to_le_bytes());
        }
        let crc = persist::crc32(&bytes[24..]);
        bytes[20..24].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let err = match Storage::open(&dir.path().join("storage"), &dir.path().join("snapshots")) {
            Ok(_) => panic!("a damaged checkpoint opened (indexed: {indexed})"),
            Err(e) => e.to_string(),
        };
        let why = if indexed {
            "is another point's"
        } else {
            "is listed twice"
        };
        assert!(err.contains(why) && err.contains("state.bin"), "{err}");
    }
}

#[test]
fn rabitq_and_wider_binary_encodings_map_onto_rabitq_storage() {
    use index_hnsw::StorageKind;
    let effective = |quantization: Value, distance: &str| {
        CollectionConfig::from_json(&json!({
            "vectors": {"size": 64, "distance": distance},
            "quantization_config": quantization,
        }))
        .map(|c| {
            let v = &c.effective_vectors()[0];
            (v.hnsw.storage, v.hnsw.rabitq_bits)
        })
    };
    for (quantization, want) in [
        (json!({"rabitq": {}}), (StorageKind::Rabitq, 1)),
        (json!({"rabitq": {"bits": 5}}), (StorageKind::Rabitq, 5)),
        (json!({"binary": {}}), (StorageKind::Binary, 1)),
        (
            json!({"binary": {"encoding": "one_bit", "query_encoding": "scalar4bits"}}),
            (StorageKind::Binary, 1),
        ),
        (
            json!({"binary": {"encoding": "two_bits"}}),
            (StorageKind::Rabitq, 2),
        ),
        (
            json!({"binary": {"encoding": "one_and_half_bits"}}),
            (StorageKind::Rabitq, 2),
        ),
    ] {
        assert_eq!(
            effective(quantization.clone(), "Cosine").unwrap(),
            want,
            "{quantization}"
        );
    }
    for (quantization, distance, word) in [
        (json!({"rabitq": {"bits": 0}}), "Dot", "bits"),
        (json!({"rabitq": {"bits": 9}}), "Dot", "bits"),
        (json!({"rabitq": {"bits": 1}}), "Manhattan", "Manhattan"),
        (
            json!({"binary": {"encoding": "four_bits"}}),
            "Dot",
            "encoding",
        ),
        (
            json!({"binary": {"query_encoding": 4}}),
            "Dot",
            "query_encoding",
        ),
    ] {
        let Err(e) = effective(quantization.clone(), distance) else {
            panic!("{quantization} with {distance} accepted");
        };
        assert!(e.to_string().contains(word), "{quantization}: {e}");
    }
    // Under Manhattan distance, which RaBitQ cannot estimate, a wider encoding stays sign
    // bits, as it was before it mapped onto RaBitQ (Qdrant accepts it there).
    assert_eq!(
        effective(json!({"binary": {"encoding": "two_bits"}}), "Manhattan").unwrap(),
        (StorageKind::Binary, 1)
    );
}

/// A config stored before binary encodings were checked (any JSON was kept) still opens: the
/// unknown settings are dropped, the known ones kept.
#[test]
fn a_stored_config_with_unknown_binary_encodings_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("storage/collections/c/config.json");
    {
        let store = open(dir.path());
        let config = CollectionConfig::from_json(&json!({
            "vectors": {"v": {"size": DIM, "distance": "Dot",
                "quantization_config": {"binary": {"encoding": "two_bits"}}}},
            "quantization_config": {"binary": {"query_encoding": "scalar8bits"}},
        }))
        .unwrap();
        store.create("c", config).unwrap();
    }
    let mut stored: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    stored["quantization_config"]["binary"]["encoding"] = json!(7);
    stored["vectors"]["v"]["quantization_config"]["binary"]["query_encoding"] =
        json!("scalar2bits");
    std::fs::write(&config_path, serde_json::to_vec(&stored).unwrap()).unwrap();
    let store = reopen(dir.path());
    let config = serde_json::to_value(store.get("c").unwrap().config()).unwrap();
    assert_eq!(
        config["quantization_config"],
        json!({"binary": {"query_encoding": "scalar8bits"}})
    );
    assert_eq!(
        config["vectors"]["v"]["quantization_config"],
        json!({"binary": {"encoding": "two_bits"}})
    );
}
