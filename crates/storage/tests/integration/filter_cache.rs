//! Filters materialised as row bitsets (`src/filter_cache.rs`) stay exact: a filter searched
//! before a write answers after it exactly as brute force over the written state does, for
//! every kind of write (new points, re-upserts that change payloads, set, overwrite, delete
//! keys, clear, delete points, writes selected by filter) and across the optimizer's moves of
//! rows into indexed segments.

use crate::collection::{brute_force, config, fill, ids, open, random_point, request, Model};
use index_core::PointId;
use payload::{Filter, KeyPath, Payload};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::sync::Arc;
use storage::{Collection, PointSelector, Update};

fn filters() -> Vec<Filter> {
    [
        json!({"must": {"key": "color", "match": {"value": "red"}}}),
        json!({"must": {"key": "n", "range": {"lt": 5}}}),
        json!({"must": {"key": "tags", "match": {"value": "b"}}}),
        json!({"must_not": {"key": "color", "match": {"value": "black"}}}),
        json!({"should": [{"key": "n", "range": {"gte": 50}}, {"key": "flag", "match": {"value": 1}}]}),
    ]
    .iter()
    .map(|f| Filter::from_json(f).unwrap())
    .collect()
}

fn passes(model: &Model, id: PointId, f: &Filter) -> bool {
    model.get(&id).is_some_and(|(_, p)| {
        f.matches(&payload::PlainPoint {
            id,
            payload: Some(p.clone()),
            vectors: vec![String::new()],
        })
    })
}

/// Exact searches equal brute force; approximate ones return only passing points and find
/// most of the exact answer.
fn check(c: &Collection, model: &Model, rng: &mut StdRng, round: usize) {
    let (mut found, mut expected) = (0usize, 0usize);
    for (i, f) in filters().into_iter().enumerate() {
        for _ in 0..4 {
            let q: Vec<f32> = (0..crate::collection::DIM)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let truth = brute_force(model, quant::Metric::Euclidean, &q, 10, Some(&f));
            let exact = c
                .search(&request(q.clone(), 10, true, Some(f.clone())))
                .unwrap();
            assert_eq!(
                ids(&exact),
                truth,
                "round {round}, filter {i}: exact search"
            );
            let approx = c.search(&request(q, 10, false, Some(f.clone()))).unwrap();
            for hit in &approx {
                assert!(
                    passes(model, hit.record.id, &f),
                    "round {round}, filter {i}: {:?} does not pass",
                    hit.record.id
                );
            }
            found += ids(&approx).iter().filter(|id| truth.contains(id)).count();
            expected += truth.len();
        }
    }
    let recall = found as f64 / expected.max(1) as f64;
    assert!(
        recall >= 0.9,
        "round {round}: filtered recall@10 {recall:.3}"
    );
}

fn random_ids(rng: &mut StdRng, model: &Model, n: usize) -> Vec<PointId> {
    let all: Vec<PointId> = model.keys().copied().collect();
    (0..n)
        .map(|_| all[rng.random_range(0..all.len())])
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[test]
fn materialised_filters_stay_exact_through_writes_and_optimizer_moves() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create("c", config("Euclid", 2, 300)).unwrap();
    let mut rng = StdRng::seed_from_u64(77);
    let mut model = Model::new();
    fill(&c, &mut rng, &mut model, 0, 1500, 250);
    c.optimize_now().unwrap();
    // Twice: a filter most points pass is materialised the second time it is seen.
    check(&c, &model, &mut rng, 0);
    check(&c, &model, &mut rng, 0);
    let mut next_id = 1500;
    for round in 1..=14 {
        match round % 7 {
            1 => {
                fill(&c, &mut rng, &mut model, next_id, 200, 100);
                next_id += 200;
            }
            2 => {
                // Re-upserts with new vectors and payloads.
                let points: Vec<_> = random_ids(&mut rng, &model, 150)
                    .into_iter()
                    .map(|id| match id {
                        PointId::Num(n) => random_point(&mut rng, n),
                        PointId::Uuid(_) => unreachable!(),
                    })
                    .collect();
                for p in &points {
                    model.insert(p.id, (p.vectors[0].1.clone(), p.payload.clone()));
                }
                c.update(Update::Upsert(points), true).unwrap();
            }
            3 => {
                let ids = random_ids(&mut rng, &model, 120);
                let set: Payload = json!({"color": "red", "flag": 1})
                    .as_object()
                    .unwrap()
                    .clone();
                for id in &ids {
                    payload::set_payload(&mut model.get_mut(id).unwrap().1, &set, None).unwrap();
                }
                c.update(
                    Update::SetPayload {
                        payload: set,
                        selector: PointSelector::Ids(ids),
                        key: None,
                    },
                    true,
                )
                .unwrap();
            }
            4 => {
                let ids = random_ids(&mut rng, &model, 80);
                let (overwrite, clear) = ids.split_at(ids.len() / 2);
                let new: Payload = json!({"n": 1, "tags": ["b"]}).as_object().unwrap().clone();
                for id in overwrite {
                    model.get_mut(id).unwrap().1 = new.clone();
                }
                for id in clear {
                    model.get_mut(id).unwrap().1.clear();
                }
                c.update(
                    Update::OverwritePayload {
                        payload: new,
                        selector: PointSelector::Ids(overwrite.to_vec()),
                    },
                    true,
                )
                .unwrap();
                c.update(
                    Update::ClearPayload(PointSelector::Ids(clear.to_vec())),
                    true,
                )
                .unwrap();
            }
            5 => {
                let ids = random_ids(&mut rng, &model, 100);
                let keys = [KeyPath::parse("tags").unwrap()];
                for id in &ids {
                    payload::delete_keys(&mut model.get_mut(id).unwrap().1, &keys);
                }
                c.update(
                    Update::DeletePayload {
                        keys: vec!["tags".into()],
                        selector: PointSelector::Ids(ids),
                    },
                    true,
                )
                .unwrap();
                let gone = random_ids(&mut rng, &model, 100);
                for id in &gone {
                    model.remove(id);
                }
                c.update(Update::Delete(PointSelector::Ids(gone)), true)
                    .unwrap();
            }
            6 => {
                // A write selected by filter: every black point becomes green.
                let black = Arc::new(
                    Filter::from_json(
                        &json!({"must": {"key": "color", "match": {"value": "black"}}}),
                    )
                    .unwrap(),
                );
                let set: Payload = json!({"color": "green"}).as_object().unwrap().clone();
                let ids: Vec<PointId> = model
                    .keys()
                    .copied()
                    .filter(|id| passes(&model, *id, &black))
                    .collect();
                for id in &ids {
                    payload::set_payload(&mut model.get_mut(id).unwrap().1, &set, None).unwrap();
                }
                c.update(
                    Update::SetPayload {
                        payload: set,
                        selector: PointSelector::Filter(black),
                        key: None,
                    },
                    true,
                )
                .unwrap();
            }
            _ => c.optimize_now().unwrap(),
        }
        check(&c, &model, &mut rng, round);
    }
    store.close().unwrap();
}
