//! How a shard's segments evolve under the optimizer: small indexed segments (left by vacuums
//! of segments capped by `max_segment_size`) merge into larger ones while searches go on,
//! without a point ever missing or doubled, with every vector and payload kept, and the merged
//! layout survives a restart (a control collection with a high `default_segment_number` keeps
//! its segments apart, so the test fails if nothing merges); full vectors configured
//! `on_disk` move to the file map when their segment's files are written, not at the next
//! restart (a control collection in RAM has the same bytes, none of them mapped).

use crate::collection::{
    brute_force, fill, ids, open, optimize_while_searching, request, Model, DIM,
};
use index_core::PointId;
use payload::PayloadSelector;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::HashSet;
use storage::{Collection, CollectionConfig, PointSelector, Update, VectorSelector};

/// One shard; appendable segments seal at 224 points (7 KB of vectors), indexed ones stop
/// growing at 608 (19 KB), and
/// a segment with a fifth of its rows deleted (50 at least) is rebuilt.
fn capped(segment_target: usize) -> CollectionConfig {
    let kb = |points: usize| (points * DIM * 4).div_ceil(1024);
    CollectionConfig::from_json(&json!({
        "vectors": {"size": DIM, "distance": "Euclid"},
        "hnsw_config": {"m": 16, "ef_construct": 64, "full_scan_threshold": 1},
        "optimizers_config": {
            "indexing_threshold": kb(200),
            "max_segment_size": kb(600),
            "default_segment_number": segment_target,
            "deleted_threshold": 0.2,
            "vacuum_min_vector_number": 50,
            "flush_interval_sec": 1,
        },
    }))
    .unwrap()
}

/// Fills 3,000 points, indexes them (five full segments), then deletes 70% of the points of
/// four segments' worth of ids, so that vacuums leave small segments behind.
fn churned(c: &Collection, rng: &mut StdRng) -> Model {
    let mut model = Model::new();
    fill(c, rng, &mut model, 0, 3_000, 200);
    c.optimize_now().unwrap();
    let gone: Vec<PointId> = (0..2_400u64)
        .filter(|i| i % 10 < 7)
        .map(PointId::Num)
        .collect();
    c.update(Update::Delete(PointSelector::Ids(gone.clone())), true)
        .unwrap();
    for id in &gone {
        model.remove(id);
    }
    model
}

fn check_points(c: &Collection, model: &Model) {
    assert_eq!(c.count(None), model.len());
    let all: Vec<PointId> = model.keys().copied().collect();
    let got = c.retrieve(&all, &PayloadSelector::All, &VectorSelector::All);
    assert_eq!(got.len(), model.len());
    for r in got {
        let (v, p) = &model[&r.id];
        let vectors = r.vectors.unwrap();
        assert_eq!(&vectors[0].1, v, "vector of {:?}", r.id);
        assert_eq!(r.payload.as_ref(), Some(p), "payload of {:?}", r.id);
    }
}

#[test]
fn small_indexed_segments_merge_without_a_point_missing_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut rng = StdRng::seed_from_u64(21);
    let control = store.create("apart", capped(100)).unwrap();
    let model = churned(&control, &mut StdRng::seed_from_u64(21));
    control.optimize_now().unwrap();
    let apart = control.stats().segments;
    eprintln!("kept apart: {:?}", control.stats());
    check_points(&control, &model);

    let c = store.create("merged", capped(1)).unwrap();
    let churned_model = churned(&c, &mut rng);
    assert_eq!(churned_model, model, "the same points in both collections");
    let queries: Vec<Vec<f32>> = (0..20)
        .map(|_| (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let truths: Vec<Vec<PointId>> = queries
        .iter()
        .map(|q| brute_force(&model, quant::Metric::Euclidean, q, 10, None))
        .collect();
    // Vacuums and merges run while exact searches check that no point is missing or doubled.
    optimize_while_searching(&c, &queries, &truths, model.len());
    let merged = c.stats();
    eprintln!("merged: {merged:?}");
    assert!(!merged.optimizing, "{merged:?}");
    // Apart: five capped segments, four of them shrunk to 180 live points by vacuums, and the
    // appendable one. Merged: 180 + 180 + 180 fit in 600, and so on.
    assert!(
        merged.segments < apart,
        "{} segments after merges, {apart} kept apart",
        merged.segments
    );
    assert!(merged.segments <= 4, "{merged:?}");
    // Everything but the appendable tail (less than one indexing threshold) is indexed.
    assert!(merged.indexed_points + 224 >= model.len(), "{merged:?}");
    check_points(&c, &model);
    let mut hits = 0;
    for (q, truth) in queries.iter().zip(&truths) {
        let got = c.search(&request(q.clone(), 10, false, None)).unwrap();
        let got: Vec<PointId> = ids(&got);
        assert_eq!(
            got.iter().collect::<HashSet<_>>().len(),
            got.len(),
            "a point returned twice"
        );
        hits += truth.iter().filter(|id| got.contains(id)).count();
    }
    assert!(hits >= 190, "recall@10 over the merged graphs {hits}/200");

    // The merged layout is what a restart finds.
    store.close().unwrap();
    drop(c);
    drop(control);
    drop(store);
    let store = open(dir.path());
    let c = store.get("merged").unwrap();
    assert_eq!(c.stats().segments, merged.segments);
    check_points(&c, &model);
    for (q, truth) in queries.iter().zip(&truths) {
        let hits = c.search(&request(q.clone(), 10, true, None)).unwrap();
        assert_eq!(&ids(&hits), truth);
    }
    store.close().unwrap();
}

/// A collection of 8-bit codes over the full vectors, these `on_disk` or not.
fn quantized(on_disk: bool) -> CollectionConfig {
    let kb = |points: usize| (points * DIM * 4).div_ceil(1024);
    CollectionConfig::from_json(&json!({
        "vectors": {"size": DIM, "distance": "Cosine", "on_disk": on_disk},
        "hnsw_config": {"m": 16, "ef_construct": 64},
        "quantization_config": {"scalar": {"type": "int8", "always_ram": true}},
        "optimizers_config": {"indexing_threshold": kb(500), "flush_interval_sec": 1},
    }))
    .unwrap()
}

#[test]
fn on_disk_vectors_leave_ram_as_soon_as_their_segment_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let in_ram = store.create("ram", quantized(false)).unwrap();
    let on_disk = store.create("disk", quantized(true)).unwrap();
    let mut models = Vec::new();
    for c in [&in_ram, &on_disk] {
        let mut model = Model::new();
        fill(c, &mut StdRng::seed_from_u64(9), &mut model, 0, 4_000, 250);
        c.optimize_now().unwrap();
        models.push(model);
    }
    assert_eq!(models[0], models[1]);
    let model = &models[1];
    let (ram, disk) = (in_ram.stats(), on_disk.stats());
    assert_eq!(ram.index_vector_bytes_on_disk, 0, "{ram:?}");
    // The full vectors (32 bytes each here) of every saved row are in the file map, without a
    // restart; what stays in RAM is the codes and the rows added since the last save.
    let saved_bytes = disk.index_vector_bytes_on_disk;
    assert!(saved_bytes >= 2_000 * DIM * 4, "{disk:?}");
    assert_eq!(
        disk.index_vector_bytes, ram.index_vector_bytes,
        "the same vectors and codes, placed differently: {ram:?} {disk:?}"
    );
    // Vectors read back from the map are the ones sent (normalised for cosine), and searches
    // re-score with them.
    check_points(&in_ram, model);
    check_points(&on_disk, model);
    let mut rng = StdRng::seed_from_u64(10);
    let mut hits = 0;
    for _ in 0..30 {
        let q: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
        let truth = brute_force(model, quant::Metric::Cosine, &q, 10, None);
        let exact = on_disk.search(&request(q.clone(), 10, true, None)).unwrap();
        assert_eq!(ids(&exact), truth);
        let near = on_disk.search(&request(q, 10, false, None)).unwrap();
        hits += truth.iter().filter(|id| ids(&near).contains(id)).count();
    }
    assert!(hits >= 285, "recall@10 {hits}/300");
    // The mapped segment keeps taking rows, and a later save maps them too.
    let mut model = model.clone();
    fill(
        &on_disk,
        &mut StdRng::seed_from_u64(11),
        &mut model,
        4_000,
        8_000,
        250,
    );
    on_disk.optimize_now().unwrap();
    let grown = on_disk.stats();
    assert!(grown.index_vector_bytes_on_disk > saved_bytes, "{grown:?}");
    check_points(&on_disk, &model);
    store.close().unwrap();
    drop((in_ram, on_disk, store));
    let store = open(dir.path());
    let c = store.get("disk").unwrap();
    check_points(&c, &model);
    store.close().unwrap();
}
