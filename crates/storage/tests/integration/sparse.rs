//! Sparse vectors in a collection beside a dense one, on real disk: searches through the
//! inverted index (and over given candidates) equal a brute-force dot product, with filters,
//! score bounds and IDF weights counted over every shard; `has_vector` sees them; vector
//! updates and deletes keep the rest of a point; everything reads back the same after the
//! optimizer moves points into indexed segments, after a clean restart (the checkpoint) and
//! after a drop without closing (the log replayed).

use index_core::{PointId, SearchParams};
use payload::{Filter, Payload, PayloadSelector};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use storage::{
    Collection, CollectionConfig, PointSelector, PointWrite, Query, SearchRequest, SparseVector,
    Storage, StorageErrorKind, Update, VectorSelector,
};

/// id → (sparse name → vector, payload).
type Model = BTreeMap<PointId, (BTreeMap<String, SparseVector>, Payload)>;

fn open(dir: &Path) -> Storage {
    for _ in 0..100 {
        if let Ok(s) = Storage::open(&dir.join("storage"), &dir.join("snapshots")) {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Storage::open(&dir.join("storage"), &dir.join("snapshots")).unwrap()
}

fn config() -> CollectionConfig {
    CollectionConfig::from_json(&json!({
        "vectors": {"d": {"size": 4, "distance": "Dot"}},
        "sparse_vectors": {"text": {"modifier": "idf"}, "splade": {"index": {"on_disk": true}}},
        "shard_number": 2,
        // Segments of about 100 points, so that points move into indexed segments.
        "optimizers_config": {"indexing_threshold": 2, "flush_interval_sec": 1},
    }))
    .unwrap()
}

/// A random sparse vector over a vocabulary where low indices are common (Zipf-like).
fn random_sparse(rng: &mut StdRng) -> SparseVector {
    let n = rng.random_range(1..20);
    let mut pairs: BTreeMap<u32, f32> = BTreeMap::new();
    for _ in 0..n {
        let i = (rng.random_range(0.0f64..1.0).powi(3) * 3000.0) as u32;
        pairs.insert(i, rng.random_range(0.05f32..2.0));
    }
    SparseVector::new(
        pairs.keys().copied().collect(),
        pairs.values().copied().collect(),
    )
    .unwrap()
}

fn point(rng: &mut StdRng, id: u64) -> PointWrite {
    let mut sparse = Vec::new();
    if rng.random_bool(0.85) {
        sparse.push(("text".to_string(), random_sparse(rng)));
    }
    if rng.random_bool(0.5) {
        sparse.push(("splade".to_string(), random_sparse(rng)));
    }
    let mut payload = Payload::new();
    payload.insert("g".into(), json!(id % 3));
    PointWrite {
        id: PointId::Num(id),
        vectors: vec![(
            "d".into(),
            (0..4).map(|_| rng.random_range(-1.0..1.0)).collect(),
        )],
        sparse,
        multi: Vec::new(),
        payload,
    }
}

fn remember(model: &mut Model, points: &[PointWrite]) {
    for p in points {
        model.insert(
            p.id,
            (p.sparse.iter().cloned().collect(), p.payload.clone()),
        );
    }
}

fn request(name: &str, q: SparseVector, limit: usize, filter: Option<Filter>) -> SearchRequest {
    SearchRequest {
        vector_name: name.into(),
        query: Query::Sparse(q),
        filter: filter.map(Arc::new),
        params: SearchParams::top(limit),
        with_payload: PayloadSelector::Nothing,
        with_vector: VectorSelector::Only(vec![name.into()]),
        candidates: None,
    }
}

/// The brute-force answer: (id, dot) of the points holding `name` that share an index with
/// `q`, pass `filter`, best first (ties by id).
fn truth(
    model: &Model,
    name: &str,
    q: &SparseVector,
    k: usize,
    f: Option<&Filter>,
) -> Vec<(PointId, f32)> {
    let mut all: Vec<(PointId, f32)> = model
        .iter()
        .filter(|(id, (_, payload))| {
            f.is_none_or(|f| {
                f.matches(&payload::PlainPoint {
                    id: **id,
                    payload: Some(payload.clone()),
                    vectors: Vec::new(),
                })
            })
        })
        .filter_map(|(id, (sparse, _))| Some((*id, q.dot(sparse.get(name)?)?)))
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

/// The IDF-weighted query, from the model.
fn idf_query(model: &Model, q: &SparseVector) -> SparseVector {
    let holders: Vec<&SparseVector> = model.values().filter_map(|(s, _)| s.get("text")).collect();
    let n = holders.len();
    let values = q
        .indices
        .iter()
        .zip(&q.values)
        .map(|(i, v)| {
            let df = holders.iter().filter(|h| h.indices.contains(i)).count();
            v * storage::sparse::idf(df, n)
        })
        .collect();
    SparseVector {
        indices: q.indices.clone(),
        values,
    }
}

fn check(c: &Collection, model: &Model, rng: &mut StdRng, ctx: &str) {
    for round in 0..25 {
        let name = if round % 2 == 0 { "text" } else { "splade" };
        let raw = random_sparse(rng);
        let q = if name == "text" {
            let q = c.sparse_query(name, raw.clone()).unwrap();
            let want = idf_query(model, &raw);
            for (g, w) in q.values.iter().zip(&want.values) {
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                    "{ctx}: idf {g} != {w}"
                );
            }
            q
        } else {
            assert_eq!(
                c.sparse_query(name, raw.clone()).unwrap(),
                raw,
                "no modifier"
            );
            raw
        };
        let filter = (round % 3 == 0).then(|| {
            Filter::from_json(&json!({"must": [{"key": "g", "match": {"value": round % 3}}]}))
                .unwrap()
        });
        let want = truth(model, name, &q, 10, filter.as_ref());
        let hits = c
            .search(&request(name, q.clone(), 10, filter.clone()))
            .unwrap();
        let got: Vec<(PointId, f32)> = hits.iter().map(|h| (h.record.id, h.score)).collect();
        assert_eq!(
            got.len(),
            want.len(),
            "{ctx} round {round}: {got:?} != {want:?}"
        );
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g.1 - w.1).abs() <= 1e-4 * w.1.abs().max(1.0),
                "{ctx} round {round}: score {g:?} != {w:?}"
            );
        }
        // Ties aside, the same points; each returned with its sparse vector as stored.
        for h in &hits {
            let stored = &model[&h.record.id].0[name];
            assert_eq!(
                h.record.sparse,
                vec![(name.to_string(), stored.clone())],
                "{ctx}"
            );
            assert!((q.dot(stored).unwrap() - h.score).abs() < 1e-4);
        }
        // Over candidates: the same ranking restricted to them.
        let cands: Vec<PointId> = model
            .keys()
            .copied()
            .filter(|_| rng.random_bool(0.3))
            .collect();
        let keep = Filter::has_id(cands.iter().copied());
        let within = filter.as_ref().map_or(keep.clone(), |f| f.merged(&keep));
        let want_within: Vec<PointId> = truth(model, name, &q, 10, Some(&within))
            .iter()
            .map(|w| w.0)
            .collect();
        let mut req = request(name, q.clone(), 10, filter.clone());
        req.candidates = Some(cands.into());
        let got: Vec<PointId> = c
            .search(&req)
            .unwrap()
            .iter()
            .map(|h| h.record.id)
            .collect();
        assert_eq!(got, want_within, "{ctx} round {round}: over candidates");
        // A score bound keeps what reaches it.
        if let Some(mid) = want.get(want.len() / 2) {
            let mut bounded = request(name, q.clone(), 10, filter.clone());
            bounded.params.max_distance = Some(-mid.1);
            let got = c.search(&bounded).unwrap();
            let reaching = want.iter().filter(|w| w.1 >= mid.1).count();
            assert_eq!(
                got.len(),
                reaching,
                "{ctx}: what reaches the bound {}",
                mid.1
            );
        }
    }
    // has_vector counts the points holding each sparse vector.
    for name in ["text", "splade"] {
        let f = Filter::from_json(&json!({"must": [{"has_vector": name}]})).unwrap();
        let want = model.values().filter(|(s, _)| s.contains_key(name)).count();
        assert_eq!(c.count(Some(&f)), want, "{ctx}: has_vector {name}");
    }
}

#[test]
fn sparse_vectors_search_update_and_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(31);
    let mut model = Model::new();
    {
        let store = open(dir.path());
        let c = store.create("c", config()).unwrap();
        for start in (0..1200).step_by(200) {
            let points: Vec<PointWrite> =
                (start..start + 200).map(|i| point(&mut rng, i)).collect();
            remember(&mut model, &points);
            c.update(Update::Upsert(points), true).unwrap();
        }
        c.optimize_now().unwrap();
        assert!(c.stats().indexed_points > 0, "{:?}", c.stats());
        check(&c, &model, &mut rng, "after indexing");

        // Replace the sparse vector of some points, delete it from others, delete points.
        let updates: Vec<PointWrite> = (0..300)
            .map(|i| PointWrite {
                id: PointId::Num(i * 3),
                vectors: Vec::new(),
                sparse: vec![("text".into(), random_sparse(&mut rng))],
                multi: Vec::new(),
                payload: Payload::new(),
            })
            .collect();
        for u in &updates {
            model
                .get_mut(&u.id)
                .unwrap()
                .0
                .insert("text".into(), u.sparse[0].1.clone());
        }
        c.update(
            Update::UpdateVectors {
                points: updates,
                filter: None,
            },
            true,
        )
        .unwrap();
        let cleared: Vec<PointId> = (0..200).map(|i| PointId::Num(i * 5 + 1)).collect();
        c.update(
            Update::DeleteVectors {
                selector: PointSelector::Ids(cleared.clone()),
                names: vec!["splade".into()],
            },
            true,
        )
        .unwrap();
        for id in &cleared {
            model.get_mut(id).unwrap().0.remove("splade");
        }
        let gone: Vec<PointId> = (0..100).map(|i| PointId::Num(i * 11 + 2)).collect();
        c.update(Update::Delete(PointSelector::Ids(gone.clone())), true)
            .unwrap();
        for id in &gone {
            model.remove(id);
        }
        // The dense vector of an updated point stays.
        let r = c
            .retrieve(
                &[PointId::Num(3)],
                &PayloadSelector::All,
                &VectorSelector::All,
            )
            .pop()
            .unwrap();
        assert_eq!(r.vectors.as_ref().unwrap().len(), 1, "{r:?}");
        assert_eq!(
            r.sparse.iter().find(|(n, _)| n == "text").unwrap().1,
            model[&PointId::Num(3)].0["text"]
        );
        check(&c, &model, &mut rng, "after updates");
        store.close().unwrap();
    }
    {
        let store = open(dir.path());
        let c = store.get("c").unwrap();
        check(&c, &model, &mut rng, "after a clean restart");
        // Writes the log holds but no checkpoint, then a drop without closing.
        let points: Vec<PointWrite> = (2000..2100).map(|i| point(&mut rng, i)).collect();
        remember(&mut model, &points);
        c.update(Update::Upsert(points), true).unwrap();
    }
    let store = open(dir.path());
    let c = store.get("c").unwrap();
    check(&c, &model, &mut rng, "after the log replayed");

    // Bad input: an unknown sparse name, a sparse query of a dense vector.
    let bad = PointWrite {
        id: PointId::Num(1),
        vectors: Vec::new(),
        sparse: vec![("nope".into(), random_sparse(&mut rng))],
        multi: Vec::new(),
        payload: Payload::new(),
    };
    let e = c.update(Update::Upsert(vec![bad]), true).unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::InvalidInput, "{e}");
    assert!(c
        .search(&request("d", random_sparse(&mut rng), 3, None))
        .is_err());
    store.close().unwrap();
}

#[test]
fn a_collection_of_sparse_vectors_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store
        .create(
            "s",
            CollectionConfig::from_json(&json!({"vectors": {}, "sparse_vectors": {"text": {}}}))
                .unwrap(),
        )
        .unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let mut model = Model::new();
    let points: Vec<PointWrite> = (0..500)
        .map(|i| {
            let mut p = point(&mut rng, i);
            p.vectors.clear();
            p.sparse.retain(|(n, _)| n == "text");
            p
        })
        .collect();
    remember(&mut model, &points);
    c.update(Update::Upsert(points), true).unwrap();
    c.optimize_now().unwrap();
    for _ in 0..10 {
        let q = random_sparse(&mut rng);
        let want: Vec<PointId> = truth(&model, "text", &q, 7, None)
            .iter()
            .map(|w| w.0)
            .collect();
        let got: Vec<PointId> = c
            .search(&request("text", q, 7, None))
            .unwrap()
            .iter()
            .map(|h| h.record.id)
            .collect();
        assert_eq!(got, want);
    }
    assert!(CollectionConfig::from_json(&json!({"vectors": {}})).is_err());
    assert!(CollectionConfig::from_json(
        &json!({"vectors": {"a": {"size": 2, "distance": "Dot"}}, "sparse_vectors": {"a": {}}})
    )
    .is_err());
    store.close().unwrap();
}
