//! Named vectors created on and deleted from a collection with points in appendable and
//! indexed segments (`Collection::create_vector`, `Collection::delete_vector`): every stored
//! vector reads back as written through the re-layout of the columns (a vector created
//! between two others by name moves the later one), searches equal brute force, and the
//! change survives a restart, a drop without closing, and a crash between the config and the
//! checkpoints (a checkpoint in the old layout under the new config).

use index_core::{PointId, SearchParams};
use payload::{Payload, PayloadSelector};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use storage::{
    Collection, CollectionConfig, Distance, PointWrite, Query, SearchRequest, Storage,
    StorageErrorKind, Update, VectorParams, VectorSelector,
};

/// id → name → vector as written.
type Model = BTreeMap<PointId, BTreeMap<String, Vec<f32>>>;

fn open(dir: &Path) -> Storage {
    // The background thread of a dropped store may hold the log's lock a moment longer.
    for _ in 0..100 {
        if let Ok(s) = Storage::open(&dir.join("storage"), &dir.join("snapshots")) {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Storage::open(&dir.join("storage"), &dir.join("snapshots")).unwrap()
}

fn params(size: usize, distance: Distance) -> VectorParams {
    serde_json::from_value(json!({"size": size, "distance": distance})).unwrap()
}

/// Name → (size, distance) of the vectors in force.
type Shapes = BTreeMap<&'static str, (usize, Distance)>;

fn random_vector(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Points `ids` with each vector of `shapes` (one in six lacks one of them), into `model`.
fn write(
    c: &Collection,
    rng: &mut StdRng,
    ids: std::ops::Range<u64>,
    shapes: &Shapes,
    model: &mut Model,
) {
    let points: Vec<PointWrite> = ids
        .map(|i| {
            let mut vectors: BTreeMap<String, Vec<f32>> = shapes
                .iter()
                .map(|(n, (dim, _))| (n.to_string(), random_vector(rng, *dim)))
                .collect();
            if shapes.len() > 1 && rng.random_bool(1.0 / 6.0) {
                let drop = shapes
                    .keys()
                    .nth(rng.random_range(0..shapes.len()))
                    .unwrap();
                vectors.remove(*drop);
            }
            model.insert(PointId::Num(i), vectors.clone());
            PointWrite {
                id: PointId::Num(i),
                vectors: vectors.into_iter().collect(),
                payload: Payload::new(),
                sparse: Vec::new(),
                multi: Vec::new(),
            }
        })
        .collect();
    for chunk in points.chunks(500) {
        c.update(Update::Upsert(chunk.to_vec()), true).unwrap();
    }
}

fn prepared(v: &[f32], distance: Distance) -> Vec<f32> {
    if distance != Distance::Cosine {
        return v.to_vec();
    }
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn distance(a: &[f32], b: &[f32], d: Distance) -> f32 {
    match d {
        Distance::Cosine | Distance::Dot => -a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>(),
        Distance::Euclid => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>(),
        Distance::Manhattan => a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>(),
    }
}

fn search(c: &Collection, name: &str, q: &[f32], exact: bool) -> storage::Result<Vec<PointId>> {
    let mut params = SearchParams::top(10);
    params.exact = exact;
    params.hnsw_ef = Some(64);
    let req = SearchRequest {
        vector_name: name.to_string(),
        query: Query::Nearest(q.to_vec()),
        filter: None,
        params,
        with_payload: PayloadSelector::Nothing,
        with_vector: VectorSelector::Nothing,
        candidates: None,
    };
    Ok(c.search(&req)?.into_iter().map(|h| h.record.id).collect())
}

/// The 10 nearest by brute force over the model.
fn truth(model: &Model, name: &str, q: &[f32], d: Distance) -> Vec<PointId> {
    let q = prepared(q, d);
    let mut all: Vec<(f32, PointId)> = model
        .iter()
        .filter_map(|(id, v)| v.get(name).map(|v| (distance(&q, &prepared(v, d), d), *id)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(10).map(|(_, id)| id).collect()
}

/// Every point's vectors equal the model's; exact searches equal brute force; approximate
/// ones keep their recall.
fn check(c: &Collection, model: &Model, shapes: &Shapes, rng: &mut StdRng, ctx: &str) {
    let ids: Vec<PointId> = model.keys().copied().collect();
    let got = c.retrieve(&ids, &PayloadSelector::Nothing, &VectorSelector::All);
    assert_eq!(got.len(), model.len(), "{ctx}");
    for r in got {
        let vectors: BTreeMap<String, Vec<f32>> = r.vectors.unwrap().into_iter().collect();
        let want = &model[&r.id];
        assert_eq!(
            vectors.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{ctx}: vector names of {}",
            r.id
        );
        for (name, v) in &vectors {
            let w = prepared(&want[name], shapes[name.as_str()].1);
            assert!(
                v.iter().zip(&w).all(|(a, b)| (a - b).abs() < 1e-5),
                "{ctx}: {name} of {}: {v:?} != {w:?}",
                r.id
            );
        }
    }
    for (name, (dim, d)) in shapes {
        let (mut found, mut total) = (0, 0);
        for _ in 0..20 {
            let q = random_vector(rng, *dim);
            let want = truth(model, name, &q, *d);
            assert_eq!(
                search(c, name, &q, true).unwrap(),
                want,
                "{ctx}: exact {name}"
            );
            let got = search(c, name, &q, false).unwrap();
            found += got.iter().filter(|id| want.contains(id)).count();
            total += want.len();
        }
        let recall = found as f64 / total as f64;
        assert!(recall >= 0.9, "{ctx}: recall {recall} over {name}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn vectors_created_and_deleted_keep_every_stored_vector_through_restarts_and_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let config = CollectionConfig::from_json(&json!({
        "vectors": {"a": {"size": 4, "distance": "Cosine"}, "c": {"size": 3, "distance": "Euclid"}},
        "shard_number": 2,
        "hnsw_config": {"m": 16, "ef_construct": 64, "full_scan_threshold": 1},
        // About 110 points per appendable segment.
        "optimizers_config": {"indexing_threshold": 3},
    }))
    .unwrap();
    let c = store.create("c", config).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut model = Model::new();
    let mut shapes: Shapes = [("a", (4, Distance::Cosine)), ("c", (3, Distance::Euclid))].into();
    write(&c, &mut rng, 0..1500, &shapes, &mut model);
    c.optimize_now().unwrap();
    // A tail in the appendable segments.
    write(&c, &mut rng, 1500..1550, &shapes, &mut model);
    check(&c, &model, &shapes, &mut rng, "before");

    // `b` sorts between `a` and `c`: `c` moves one column on.
    assert!(c.create_vector("b", params(5, Distance::Dot)).unwrap());
    assert!(
        !c.create_vector("b", params(5, Distance::Dot)).unwrap(),
        "the same again"
    );
    let e = c.create_vector("b", params(6, Distance::Dot)).unwrap_err();
    assert!(matches!(e.kind(), StorageErrorKind::InvalidInput), "{e}");
    assert!(c.create_vector("a/b", params(2, Distance::Dot)).is_err());
    check(&c, &model, &shapes, &mut rng, "b created");
    shapes.insert("b", (5, Distance::Dot));

    // `b` written through new points and vector updates, indexed.
    write(&c, &mut rng, 2000..2800, &shapes, &mut model);
    let updates: Vec<PointWrite> = (0..300u64)
        .map(|i| {
            let v = random_vector(&mut rng, 5);
            model
                .get_mut(&PointId::Num(i))
                .unwrap()
                .insert("b".into(), v.clone());
            PointWrite {
                id: PointId::Num(i),
                vectors: vec![("b".into(), v)],
                payload: Payload::new(),
                sparse: Vec::new(),
                multi: Vec::new(),
            }
        })
        .collect();
    c.update(
        Update::UpdateVectors {
            points: updates,
            filter: None,
        },
        true,
    )
    .unwrap();
    c.optimize_now().unwrap();
    check(&c, &model, &shapes, &mut rng, "b written");

    // The files as they are now: what a crash after the next change's config write, before
    // its checkpoints, leaves (`checkpoint_forced` writes this layout first).
    c.flush().unwrap();
    let shard_dirs: Vec<_> = (0..2)
        .map(|k| dir.path().join(format!("storage/collections/c/shard-{k}")))
        .collect();
    let saved = tempfile::tempdir().unwrap();
    for (k, d) in shard_dirs.iter().enumerate() {
        assert!(d.exists(), "{d:?}");
        copy_dir(d, &saved.path().join(k.to_string()));
    }

    // `a` deleted: `b` and `c` move one column back.
    assert!(c.delete_vector("a").unwrap());
    assert!(
        !c.delete_vector("a").unwrap(),
        "deleting it again changes nothing"
    );
    shapes.remove("a");
    for v in model.values_mut() {
        v.remove("a");
    }
    let e = search(&c, "a", &[1.0; 4], true).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            StorageErrorKind::NotFound | StorageErrorKind::InvalidInput
        ),
        "{e}"
    );
    check(&c, &model, &shapes, &mut rng, "a deleted");

    // Dropped without closing.
    drop(c);
    drop(store);
    let store = open(dir.path());
    let c = store.get("c").unwrap();
    check(&c, &model, &shapes, &mut rng, "a deleted, reopened");

    // The crash between the config and the checkpoints: the shards' files in the layout with
    // `a`, the config without it. A crash leaves no thread behind, but a dropped store's
    // background thread may be amid an optimizer step that still writes graph files and a
    // checkpoint: the files are replaced only once it has let the collection go (it wrote a
    // checkpoint naming graphs into the restored directory otherwise).
    let gone = std::sync::Arc::downgrade(&c);
    drop(c);
    drop(store);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while gone.strong_count() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped collection is still held"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for (k, d) in shard_dirs.iter().enumerate() {
        std::fs::remove_dir_all(d).unwrap();
        copy_dir(&saved.path().join(k.to_string()), d);
    }
    let store = open(dir.path());
    let c = store.get("c").unwrap();
    check(
        &c,
        &model,
        &shapes,
        &mut rng,
        "old-layout checkpoint under the new config",
    );
    // Loading re-linked the graphs in the new layout: later checkpoints name the right files.
    write(&c, &mut rng, 3000..3400, &shapes, &mut model);
    c.optimize_now().unwrap();
    store.close().unwrap();
    drop(c);
    drop(store);
    let store = open(dir.path());
    let c = store.get("c").unwrap();
    check(
        &c,
        &model,
        &shapes,
        &mut rng,
        "written after the crash, closed, reopened",
    );

    // The only vector left of one cannot go.
    assert!(c.delete_vector("b").unwrap());
    shapes.remove("b");
    for v in model.values_mut() {
        v.remove("b");
    }
    let e = c.delete_vector("c").unwrap_err();
    assert!(matches!(e.kind(), StorageErrorKind::InvalidInput), "{e}");
    check(&c, &model, &shapes, &mut rng, "only c");
    store.close().unwrap();
}
