//! Multivectors in a collection beside a dense one, on real disk: exact searches equal a
//! brute-force MaxSim (values compared) under every metric, with filters and score bounds;
//! searches through the encodings' graph keep their recall once the optimizer has moved points
//! into indexed segments (the approximate path really taken: most points indexed, the graph
//! asked for far fewer candidates than there are points); example queries score every point;
//! `has_vector` sees matrices; vector updates and deletes keep the rest of a point; everything
//! reads back the same after a clean restart (the checkpoint) and after a drop without closing
//! (the log replayed).

use index_core::{PointId, SearchParams};
use payload::{Filter, PayloadSelector};
use quant::Metric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use storage::multi::MaxSimQuery;
use storage::{
    Collection, CollectionConfig, Examples, MultiVector, PointSelector, PointWrite, Query,
    RecommendStrategy, SearchRequest, Storage, Update, VectorSelector,
};

const DIM: usize = 16;
const TOPICS: usize = 40;

/// Opens the storage, waiting for a dropped one's background threads to let go of its logs.
fn open(dir: &Path) -> Storage {
    for _ in 0..100 {
        if let Ok(s) = Storage::open(&dir.join("storage"), &dir.join("snapshots")) {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Storage::open(&dir.join("storage"), &dir.join("snapshots")).unwrap()
}

fn config(distance: &str) -> CollectionConfig {
    CollectionConfig::from_json(&json!({
        "vectors": {
            "d": {"size": 4, "distance": "Dot"},
            "colbert": {"size": DIM, "distance": distance,
                        "multivector_config": {"comparator": "max_sim"}},
        },
        "shard_number": 2,
        // Segments of about 300 points, so that most points move into indexed segments.
        "optimizers_config": {"indexing_threshold": 20, "flush_interval_sec": 1},
    }))
    .unwrap()
}

/// Rows near topic centres, as token embeddings of a document cluster around its subjects.
struct Corpus {
    centres: Vec<Vec<f32>>,
}

impl Corpus {
    fn new(rng: &mut StdRng) -> Corpus {
        let centres = (0..TOPICS)
            .map(|_| (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect())
            .collect();
        Corpus { centres }
    }

    fn matrix(&self, rng: &mut StdRng, rows: usize) -> MultiVector {
        let topics: Vec<usize> = (0..3).map(|_| rng.random_range(0..TOPICS)).collect();
        let rows = (0..rows)
            .map(|_| {
                let c = &self.centres[topics[rng.random_range(0..topics.len())]];
                c.iter()
                    .map(|x| x + rng.random_range(-0.35f32..0.35))
                    .collect()
            })
            .collect();
        MultiVector::new(rows).unwrap()
    }
}

fn point(rng: &mut StdRng, corpus: &Corpus, id: u64) -> PointWrite {
    let mut payload = payload::Payload::new();
    payload.insert("group".into(), json!(id % 5));
    let multi = if rng.random_bool(0.9) {
        let rows = rng.random_range(2..12);
        vec![("colbert".to_string(), corpus.matrix(rng, rows))]
    } else {
        Vec::new()
    };
    PointWrite {
        id: PointId::Num(id),
        vectors: vec![(
            "d".into(),
            (0..4).map(|_| rng.random_range(-1.0..1.0)).collect(),
        )],
        sparse: Vec::new(),
        multi,
        payload,
    }
}

/// id → (stored matrix, prepared as the collection stores it; group).
type Model = BTreeMap<PointId, (Option<MultiVector>, u64)>;

fn remember(model: &mut Model, points: &[PointWrite], metric: Metric) {
    for p in points {
        let m = p
            .multi
            .first()
            .map(|(_, m)| m.clone().prepared(DIM, metric).unwrap());
        let group = p.payload["group"].as_u64().unwrap();
        model.insert(p.id, (m, group));
    }
}

fn request(query: Query, limit: usize, filter: Option<Filter>, exact: bool) -> SearchRequest {
    SearchRequest {
        vector_name: "colbert".into(),
        query,
        filter: filter.map(Arc::new),
        params: SearchParams {
            exact,
            ..SearchParams::top(limit)
        },
        with_payload: PayloadSelector::Nothing,
        with_vector: VectorSelector::Nothing,
        candidates: None,
    }
}

/// The exact best `limit` (id, similarity sum) by brute force, ties by id.
fn truth(
    model: &Model,
    q: &MultiVector,
    metric: Metric,
    group: Option<u64>,
    limit: usize,
) -> Vec<(PointId, f32)> {
    let q = MaxSimQuery::new(q.clone().prepared(DIM, metric).unwrap(), metric);
    let mut all: Vec<(PointId, f32)> = model
        .iter()
        .filter(|(_, (_, g))| group.is_none_or(|want| *g == want))
        .filter_map(|(id, (m, _))| m.as_ref().map(|m| (*id, q.similarity(m))))
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(limit);
    all
}

fn group_filter(g: u64) -> Filter {
    Filter::from_json(&json!({"must": [{"key": "group", "match": {"value": g}}]})).unwrap()
}

/// Exact searches equal brute force, value for value; returns nothing.
fn check_exact(
    c: &Collection,
    model: &Model,
    corpus: &Corpus,
    rng: &mut StdRng,
    metric: Metric,
    ctx: &str,
) {
    for q in 0..15 {
        let rows = rng.random_range(1..6);
        let query = corpus.matrix(rng, rows);
        let group = (q % 3 == 0).then(|| rng.random_range(0..5u64));
        let want = truth(model, &query, metric, group, 10);
        let hits = c
            .search(&request(
                Query::Multi(query),
                10,
                group.map(group_filter),
                true,
            ))
            .unwrap();
        assert_eq!(hits.len(), want.len(), "{ctx} query {q}");
        for (h, (id, sim)) in hits.iter().zip(&want) {
            assert!(
                (h.distance + sim).abs() <= 1e-4 * sim.abs().max(1.0),
                "{ctx} query {q}: distance {} vs similarity {sim}",
                h.distance
            );
            let score = storage::multi::score_of(metric, *sim);
            assert!(
                (h.score - score).abs() <= 1e-4 * score.abs().max(1.0),
                "{ctx} query {q}"
            );
            // Equal similarities may come in either order.
            if h.record.id != *id {
                assert!(
                    (h.distance + sim).abs() <= 1e-5 * sim.abs().max(1.0),
                    "{ctx} query {q}"
                );
            }
        }
    }
}

/// Recall@10 of searches through the graph against brute force (every fourth query filtered
/// to one group of five).
fn recall(c: &Collection, model: &Model, corpus: &Corpus, rng: &mut StdRng, metric: Metric) -> f64 {
    let (mut found, mut total) = (0, 0);
    for q in 0..40 {
        let rows = rng.random_range(2..6);
        let query = corpus.matrix(rng, rows);
        let group = (q % 4 == 0).then(|| rng.random_range(0..5u64));
        let want = truth(model, &query, metric, group, 10);
        let hits = c
            .search(&request(
                Query::Multi(query),
                10,
                group.map(group_filter),
                false,
            ))
            .unwrap();
        for h in &hits {
            assert!(
                group.is_none_or(|g| model[&h.record.id].1 == g),
                "filter broken"
            );
        }
        for (id, _) in &want {
            total += 1;
            found += usize::from(hits.iter().any(|h| h.record.id == *id));
        }
    }
    found as f64 / total as f64
}

#[test]
fn multivectors_search_update_and_survive_restarts() {
    for (distance, metric) in [("Cosine", Metric::Cosine), ("Euclid", Metric::Euclidean)] {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = StdRng::seed_from_u64(31);
        let corpus = Corpus::new(&mut rng);
        let mut model = Model::new();
        {
            let store = open(dir.path());
            let c = store.create("m", config(distance)).unwrap();
            for start in (0..6000u64).step_by(500) {
                let points: Vec<PointWrite> = (start..start + 500)
                    .map(|i| point(&mut rng, &corpus, i))
                    .collect();
                remember(&mut model, &points, metric);
                c.update(Update::Upsert(points), true).unwrap();
            }
            c.optimize_now().unwrap();
            let stats = c.stats();
            // The approximate path is taken: most points indexed, and the graph asked for
            // 100 candidates of each shard's ~2,700.
            assert!(stats.indexed_points > 5000, "{stats:?}");
            check_exact(&c, &model, &corpus, &mut rng, metric, distance);
            let r = recall(&c, &model, &corpus, &mut rng, metric);
            if metric == Metric::Cosine {
                assert!(r >= 0.9, "recall@10 through the encodings' graph: {r}");
            } else {
                // Not indexed under Euclid: every point scored.
                assert_eq!(r, 1.0);
            }

            // has_vector counts the points holding a matrix.
            let has = Filter::from_json(&json!({"must": [{"has_vector": "colbert"}]})).unwrap();
            let holders = model.values().filter(|(m, _)| m.is_some()).count();
            assert_eq!(c.count(Some(&has)), holders);

            // An example query scores every holder: best_score with one positive ranks as
            // the nearest query by that matrix.
            let positive = corpus.matrix(&mut rng, 3);
            let ex = Query::MultiExamples(Examples::Recommend {
                positive: vec![positive.clone()],
                negative: Vec::new(),
                strategy: RecommendStrategy::BestScore,
            });
            let by_example = c.search(&request(ex, 10, None, false)).unwrap();
            let want = truth(&model, &positive, metric, None, 10);
            for (h, (id, sim)) in by_example.iter().zip(&want) {
                if h.record.id != *id {
                    let got = model[&h.record.id].0.as_ref().unwrap();
                    let q =
                        MaxSimQuery::new(positive.clone().prepared(DIM, metric).unwrap(), metric);
                    assert!(
                        (q.similarity(got) - sim).abs() < 1e-5,
                        "example query {distance}"
                    );
                }
            }

            // Updates: new matrices for some, the matrix deleted from others, points deleted.
            let changed: Vec<PointWrite> = (0..200u64)
                .map(|i| PointWrite {
                    id: PointId::Num(i),
                    vectors: Vec::new(),
                    sparse: Vec::new(),
                    multi: vec![("colbert".into(), corpus.matrix(&mut rng, 4))],
                    payload: Default::default(),
                })
                .collect();
            for p in &changed {
                let m = p.multi[0].1.clone().prepared(DIM, metric).unwrap();
                model.get_mut(&p.id).unwrap().0 = Some(m);
            }
            c.update(
                Update::UpdateVectors {
                    points: changed,
                    filter: None,
                },
                true,
            )
            .unwrap();
            let dropped: Vec<PointId> = (200..300).map(PointId::Num).collect();
            c.update(
                Update::DeleteVectors {
                    selector: PointSelector::Ids(dropped.clone()),
                    names: vec!["colbert".into()],
                },
                true,
            )
            .unwrap();
            for id in &dropped {
                model.get_mut(id).unwrap().0 = None;
            }
            let deleted: Vec<PointId> = (300..400).map(PointId::Num).collect();
            c.update(Update::Delete(PointSelector::Ids(deleted.clone())), true)
                .unwrap();
            for id in &deleted {
                model.remove(id);
            }
            check_exact(&c, &model, &corpus, &mut rng, metric, "after updates");
            // The rest of an updated point stays.
            let r = &c.retrieve(
                &[PointId::Num(250)],
                &PayloadSelector::All,
                &VectorSelector::All,
            )[0];
            assert!(r.multi.is_empty() && r.vectors.as_ref().unwrap().len() == 1);
            store.close().unwrap();
        }
        // A clean restart: the checkpoint.
        {
            let store = open(dir.path());
            let c = store.get("m").unwrap();
            check_exact(&c, &model, &corpus, &mut rng, metric, "after restart");
            let r = &c.retrieve(
                &[PointId::Num(5)],
                &PayloadSelector::Nothing,
                &VectorSelector::All,
            )[0];
            assert_eq!(r.multi[0].1, *model[&PointId::Num(5)].0.as_ref().unwrap());
            // Writes after the last checkpoint, then a drop without closing: the log replayed.
            let more: Vec<PointWrite> = (5000..5300u64)
                .map(|i| point(&mut rng, &corpus, i))
                .collect();
            remember(&mut model, &more, metric);
            c.update(Update::Upsert(more), true).unwrap();
            // Dropped without closing.
        }
        let store = open(dir.path());
        let c = store.get("m").unwrap();
        check_exact(&c, &model, &corpus, &mut rng, metric, "after replay");
        if metric == Metric::Cosine {
            let r = recall(&c, &model, &corpus, &mut rng, metric);
            assert!(r >= 0.9, "recall@10 after replay: {r}");
        }
        store.close().unwrap();
    }
}

#[test]
fn bad_matrices_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create("m", config("Dot")).unwrap();
    let mut rng = StdRng::seed_from_u64(2);
    let corpus = Corpus::new(&mut rng);
    let good = point(&mut rng, &corpus, 1);
    let mut wrong_dim = point(&mut rng, &corpus, 2);
    wrong_dim.multi = vec![(
        "colbert".into(),
        MultiVector::new(vec![vec![1.0; DIM - 1]]).unwrap(),
    )];
    let e = c
        .update(Update::Upsert(vec![good.clone(), wrong_dim]), true)
        .unwrap_err();
    assert!(e.to_string().contains("dim"), "{e}");
    let mut unknown = point(&mut rng, &corpus, 3);
    unknown.multi = vec![("nope".into(), corpus.matrix(&mut rng, 2))];
    assert!(c.update(Update::Upsert(vec![unknown]), true).is_err());
    // A matrix for a dense vector is refused; one vector for a multivector is its only row.
    let mut matrix_for_dense = point(&mut rng, &corpus, 4);
    matrix_for_dense.multi = vec![("d".into(), MultiVector::new(vec![vec![1.0; 4]]).unwrap())];
    assert!(c
        .update(Update::Upsert(vec![matrix_for_dense]), true)
        .is_err());
    assert_eq!(c.count(None), 0, "nothing half-written");
    let mut one_row = point(&mut rng, &corpus, 5);
    one_row.multi.clear();
    one_row.vectors.push(("colbert".into(), vec![0.5; DIM]));
    c.update(Update::Upsert(vec![one_row]), true).unwrap();
    let r = &c.retrieve(
        &[PointId::Num(5)],
        &PayloadSelector::Nothing,
        &VectorSelector::All,
    )[0];
    assert_eq!(r.multi[0].1.to_rows(), vec![vec![0.5; DIM]]);
    // A query of the wrong dimension is a typed error, not a panic.
    let q = MultiVector::new(vec![vec![1.0; 3]]).unwrap();
    assert!(c.search(&request(Query::Multi(q), 5, None, false)).is_err());
    store.close().unwrap();
}

#[test]
fn half_width_matrices_score_as_rounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(8);
    let corpus = Corpus::new(&mut rng);
    let config = CollectionConfig::from_json(&json!({
        "vectors": {"colbert": {"size": DIM, "distance": "Dot", "datatype": "float16",
                                "multivector_config": {"comparator": "max_sim"}}},
    }))
    .unwrap();
    let store = open(dir.path());
    let c = store.create("h", config).unwrap();
    let mut points: Vec<PointWrite> = (0..300).map(|i| point(&mut rng, &corpus, i)).collect();
    for p in &mut points {
        p.vectors.clear();
    }
    // The model holds what half width keeps: every value rounded to the nearest f16.
    let mut model = Model::new();
    for p in &points {
        let m = p.multi.first().map(|(_, m)| {
            let rows = m
                .to_rows()
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .map(|x| half::f16::from_f32(x).to_f32())
                        .collect()
                })
                .collect();
            MultiVector::new(rows).unwrap()
        });
        model.insert(p.id, (m, p.payload["group"].as_u64().unwrap()));
    }
    c.update(Update::Upsert(points), true).unwrap();
    check_exact(
        &c,
        &model,
        &corpus,
        &mut rng,
        Metric::InnerProduct,
        "float16",
    );
    let r = &c.retrieve(
        &[PointId::Num(7)],
        &PayloadSelector::Nothing,
        &VectorSelector::All,
    )[0];
    assert_eq!(Some(&r.multi[0].1), model[&PointId::Num(7)].0.as_ref());
    drop(c);
    store.close().unwrap();
    drop(store);
    // And so after a restart.
    let store = open(dir.path());
    let c = store.get("h").unwrap();
    check_exact(
        &c,
        &model,
        &corpus,
        &mut rng,
        Metric::InnerProduct,
        "float16 restarted",
    );
    store.close().unwrap();
}

#[test]
fn a_graph_turned_on_after_the_fact_encodes_every_matrix() {
    // A checkpoint written while the multivector had no graph (m: 0), opened under a config
    // that has one (as after a change of the encoding's version): every matrix is encoded at
    // load and indexed, and searches through the graph find them.
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(12);
    let corpus = Corpus::new(&mut rng);
    let mut model = Model::new();
    let with_m = |m: Option<usize>| {
        let mut v = json!({"size": DIM, "distance": "Cosine",
                           "multivector_config": {"comparator": "max_sim"}});
        if let Some(m) = m {
            v["hnsw_config"] = json!({"m": m});
        }
        CollectionConfig::from_json(&json!({
            "vectors": {"d": {"size": 4, "distance": "Dot"}, "colbert": v},
            "optimizers_config": {"indexing_threshold": 20, "flush_interval_sec": 1},
        }))
        .unwrap()
    };
    {
        let store = open(dir.path());
        let c = store.create("m", with_m(Some(0))).unwrap();
        let points: Vec<PointWrite> = (0..3000).map(|i| point(&mut rng, &corpus, i)).collect();
        remember(&mut model, &points, Metric::Cosine);
        c.update(Update::Upsert(points), true).unwrap();
        c.optimize_now().unwrap();
        assert!(c.stats().indexed_points > 2500);
        // Turning the graph on (or off) in place is refused: the segments' columns would change.
        let e = c
            .update_config(|cfg| {
                cfg.vectors.get_mut("colbert").unwrap().hnsw_config = None;
                Ok(())
            })
            .unwrap_err();
        assert!(e.to_string().contains("m: 0"), "{e}");
        // No graph: every point is scored.
        assert_eq!(recall(&c, &model, &corpus, &mut rng, Metric::Cosine), 1.0);
        drop(c);
        store.close().unwrap();
    }
    let path = dir.path().join("storage/collections/m/config.json");
    std::fs::write(&path, serde_json::to_vec(&with_m(None)).unwrap()).unwrap();
    let store = open(dir.path());
    let c = store.get("m").unwrap();
    check_exact(&c, &model, &corpus, &mut rng, Metric::Cosine, "re-encoded");
    c.optimize_now().unwrap();
    let stats = c.stats();
    assert!(stats.indexed_points > 2500, "{stats:?}");
    // The indexed segments hold an encoding of every matrix now.
    let holders = model.values().filter(|(m, _)| m.is_some()).count();
    let encodings = holders * storage::multi::Fde::new(DIM).len() * 4;
    assert!(stats.index_vector_bytes > encodings * 8 / 10, "{stats:?}");
    let r = recall(&c, &model, &corpus, &mut rng, Metric::Cosine);
    assert!(r >= 0.9, "recall@10 through the new graph: {r}");
    check_exact(
        &c,
        &model,
        &corpus,
        &mut rng,
        Metric::Cosine,
        "re-encoded, indexed",
    );
    drop(c);
    store.close().unwrap();
}

#[test]
fn sparse_vectors_and_multivectors_created_and_deleted_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(21);
    let corpus = Corpus::new(&mut rng);
    let base = CollectionConfig::from_json(&json!({
        "vectors": {"d": {"size": 4, "distance": "Dot"}},
        "shard_number": 2,
        "optimizers_config": {"indexing_threshold": 1, "flush_interval_sec": 1},
    }))
    .unwrap();
    let multi: storage::VectorParams = serde_json::from_value(json!({
        "size": DIM, "distance": "Cosine", "multivector_config": {"comparator": "max_sim"}}))
    .unwrap();
    let sparse: storage::SparseVectorParams =
        serde_json::from_value(json!({"modifier": "idf"})).unwrap();
    let ids: Vec<PointId> = (0..400).map(PointId::Num).collect();
    {
        let store = open(dir.path());
        let c = store.create("c", base).unwrap();
        let mut points: Vec<PointWrite> = (0..400).map(|i| point(&mut rng, &corpus, i)).collect();
        points.iter_mut().for_each(|p| p.multi.clear());
        c.update(Update::Upsert(points), true).unwrap();
        c.optimize_now().unwrap();
        assert!(c.create_vector("colbert", multi.clone()).unwrap());
        assert!(
            !c.create_vector("colbert", multi.clone()).unwrap(),
            "the same again"
        );
        assert!(c.create_sparse_vector("text", sparse.clone()).unwrap());
        let writes: Vec<PointWrite> = (0..100u64)
            .map(|i| PointWrite {
                id: PointId::Num(i),
                vectors: Vec::new(),
                sparse: vec![(
                    "text".into(),
                    storage::SparseVector::new(vec![i as u32 % 7], vec![1.0]).unwrap(),
                )],
                multi: vec![("colbert".into(), corpus.matrix(&mut rng, 3))],
                payload: Default::default(),
            })
            .collect();
        c.update(
            Update::UpdateVectors {
                points: writes,
                filter: None,
            },
            true,
        )
        .unwrap();
        drop(c);
        store.close().unwrap();
    }
    let count_with = |c: &Collection| {
        let r = c.retrieve(&ids, &PayloadSelector::Nothing, &VectorSelector::All);
        let m = r.iter().filter(|r| !r.multi.is_empty()).count();
        let s = r.iter().filter(|r| !r.sparse.is_empty()).count();
        let d = r
            .iter()
            .filter(|r| r.vectors.as_ref().is_some_and(|v| !v.is_empty()))
            .count();
        (m, s, d)
    };
    {
        let store = open(dir.path());
        let c = store.get("c").unwrap();
        assert_eq!(count_with(&c), (100, 100, 400));
        let hits = c
            .search(&request(
                Query::Multi(corpus.matrix(&mut rng, 2)),
                5,
                None,
                false,
            ))
            .unwrap();
        assert_eq!(hits.len(), 5);
        assert!(c.delete_vector("colbert").unwrap());
        assert!(c.delete_vector("text").unwrap());
        assert_eq!(count_with(&c), (0, 0, 400));
        drop(c);
        store.close().unwrap();
    }
    let store = open(dir.path());
    let c = store.get("c").unwrap();
    assert_eq!(count_with(&c), (0, 0, 400));
    let config = c.with_config(|cfg| cfg.clone());
    assert!(config.multivector("colbert").is_none() && config.sparse("text").is_none());
    drop(c);
    store.close().unwrap();
}
