//! Crash test of a whole collection: a child process takes a stream of acknowledged upserts,
//! deletes and payload updates (with the optimizer sealing, indexing and checkpointing
//! underneath) and is killed with SIGKILL at random moments, more than 20 times. After each
//! kill the parent opens the storage and checks that every acknowledged operation is there,
//! that the one in flight is wholly applied or wholly absent, and nothing else.
//!
//! The child is this test binary itself, re-executed with `VR_CRASH_CHILD_DIR` set (an
//! example binary has no `CARGO_BIN_EXE_` path to find it by).

#![cfg(unix)]

use index_core::PointId;
use payload::{Payload, PayloadSelector};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use storage::{CollectionConfig, PointSelector, PointWrite, Storage, Update, VectorSelector};

const CHILD_DIR_ENV: &str = "VR_CRASH_CHILD_DIR";
const CHILD_START_ENV: &str = "VR_CRASH_CHILD_START";
const TEST_NAME: &str = "acknowledged_operations_survive_sigkill";
const KILLS: u32 = 22;
const BATCH: u64 = 10;
const DIM: usize = 4;

/// Operation `k`: every fourth deletes the batch upserted two operations before, every
/// fourth (offset 2) sets a payload key on the previous batch, the rest upsert a batch of
/// their own ids.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Upsert(u64),
    Delete(u64),
    Mark(u64),
}

fn op(k: u64) -> Op {
    match k % 4 {
        3 => Op::Delete(k - 2),
        2 => Op::Mark(k - 1),
        _ => Op::Upsert(k),
    }
}

fn batch_ids(k: u64) -> Vec<PointId> {
    (k * BATCH..(k + 1) * BATCH).map(PointId::Num).collect()
}

fn vector(id: u64) -> Vec<f32> {
    (0..DIM)
        .map(|d| ((id * 31 + d as u64) % 97) as f32 + 1.0)
        .collect()
}

fn update(k: u64) -> Update {
    match op(k) {
        Op::Upsert(b) => Update::Upsert(
            batch_ids(b)
                .into_iter()
                .map(|id| {
                    let PointId::Num(n) = id else { unreachable!() };
                    let mut payload = Payload::new();
                    payload.insert("op".into(), json!(b));
                    PointWrite {
                        id,
                        vectors: vec![(String::new(), vector(n))],
                        payload,
                    }
                })
                .collect(),
        ),
        Op::Delete(b) => Update::Delete(PointSelector::Ids(batch_ids(b))),
        Op::Mark(b) => Update::SetPayload {
            payload: json!({"marked": k}).as_object().unwrap().clone(),
            selector: PointSelector::Ids(batch_ids(b)),
            key: None,
        },
    }
}

fn open(dir: &Path) -> Storage {
    Storage::open(&dir.join("storage"), &dir.join("snapshots")).unwrap()
}

fn child(dir: &Path, start: u64) {
    let store = open(dir);
    let c = match store.get("c") {
        Ok(c) => c,
        Err(_) => store
            .create(
                "c",
                CollectionConfig::from_json(&json!({
                    "vectors": {"size": DIM, "distance": "Euclid"},
                    "shard_number": 2,
                    // ~100 points per segment, so kills land in sealing, indexing and checkpoints.
                    "optimizers_config": {"indexing_threshold": 2, "flush_interval_sec": 1},
                    "wal_config": {"wal_capacity_mb": 1},
                }))
                .unwrap(),
            )
            .unwrap(),
    };
    println!("ready");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut k = start;
    while Instant::now() < deadline {
        c.update(update(k), true).unwrap();
        println!("ack {k}");
        k += 1;
    }
}

/// What the collection must hold after operations `0..=last` (each wholly).
fn expected(last: Option<u64>) -> BTreeMap<PointId, Option<u64>> {
    let mut m = BTreeMap::new();
    let Some(last) = last else { return m };
    for k in 0..=last {
        match op(k) {
            Op::Upsert(b) => batch_ids(b).into_iter().for_each(|id| {
                m.insert(id, None);
            }),
            Op::Delete(b) => batch_ids(b).iter().for_each(|id| {
                m.remove(id);
            }),
            Op::Mark(b) => batch_ids(b).into_iter().for_each(|id| {
                if let Some(v) = m.get_mut(&id) {
                    *v = Some(k);
                }
            }),
        }
    }
    m
}

/// The state matches operations `0..=acked` or `0..=acked+1` exactly; returns which.
fn verify(dir: &Path, acked: Option<u64>, kill: u32) -> Option<u64> {
    let store = open(dir);
    let Ok(c) = store.get("c") else {
        assert!(
            acked.is_none(),
            "kill {kill}: the collection vanished after acknowledged writes"
        );
        return None;
    };
    let ids: Vec<PointId> = (0..(acked.map_or(1, |a| a + 2) * BATCH))
        .map(PointId::Num)
        .collect();
    let records = c.retrieve(&ids, &PayloadSelector::All, &VectorSelector::All);
    let mut actual = BTreeMap::new();
    for r in &records {
        let PointId::Num(n) = r.id else {
            unreachable!()
        };
        let v = &r.vectors.as_ref().unwrap()[0].1;
        assert_eq!(v, &vector(n), "kill {kill}: vector of point {n}");
        assert!(v.iter().all(|x| x.is_finite()));
        let p = r.payload.as_ref().unwrap();
        assert_eq!(
            p["op"],
            json!(n / BATCH),
            "kill {kill}: payload of point {n}"
        );
        actual.insert(r.id, p.get("marked").and_then(|m| m.as_u64()));
    }
    assert_eq!(
        c.count(None),
        records.len(),
        "kill {kill}: points beyond the operations sent"
    );
    let next = acked.map_or(0, |a| a + 1);
    let result = if actual == expected(acked) {
        acked
    } else if actual == expected(Some(next)) {
        Some(next)
    } else {
        panic!(
            "kill {kill}: state matches neither operations 0..={acked:?} nor 0..={next} (an acknowledged write was lost or an operation was half applied): {} points",
            actual.len()
        );
    };
    store.close().unwrap();
    result
}

#[test]
fn acknowledged_operations_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let start = std::env::var(CHILD_START_ENV).unwrap().parse().unwrap();
        child(Path::new(&dir), start);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let seed = 0xc0ffee_u64;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut applied: Option<u64> = None;
    for kill in 0..KILLS {
        let start = applied.map_or(0, |a| a + 1);
        let mut child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_START_ENV, start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until it is ready, then let it run a random while.
        let ready_by = Instant::now() + Duration::from_secs(30);
        loop {
            let line = rx
                .recv_timeout(ready_by.saturating_duration_since(Instant::now()))
                .expect("child never ready");
            if line.ends_with("ready") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let mut acked = applied;
        for line in rx.try_iter() {
            if let Some(k) = line.strip_prefix("ack ") {
                acked = Some(k.parse().unwrap());
            }
        }
        applied = verify(dir.path(), acked, kill);
        eprintln!(
            "kill {kill}: acknowledged through {acked:?}, state through {applied:?} (seed {seed})"
        );
    }
    assert!(
        applied.is_some_and(|a| a > 40),
        "the child made too little progress to test anything: {applied:?}"
    );
}
