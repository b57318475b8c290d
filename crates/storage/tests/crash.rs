//! Crash test of a whole collection: a child process takes streams of acknowledged upserts,
//! deletes and payload updates from several writer threads at once (with the optimizer sealing, indexing, merging and
//! checkpointing underneath, readers searching throughout, and snapshots taken and restored
//! into a second collection in a loop beside it) and is killed with SIGKILL at random
//! moments, more than 20 times: a quarter of the kills anywhere, the rest aimed, just after
//! the child reports an optimizer step, a snapshot or a restore starting. After each kill the
//! parent opens the storage and checks, for each writer, that every operation it had
//! acknowledged is there (vectors and payloads compared), that the one it had in flight is
//! wholly applied or wholly absent, and nothing else; that the restored copy, if any, holds
//! for each writer the state after one of its operations, and across the writers a cut that
//! real time allows (no operation left out that had finished before one taken in began); that
//! every snapshot listed verifies; and that approximate search over the recovered graphs keeps
//! its recall on a fixed query set.
//!
//! The child is this test binary itself, re-executed with `VR_CRASH_CHILD_DIR` set (an
//! example binary has no `CARGO_BIN_EXE_` path to find it by).

#![cfg(unix)]

use index_core::PointId;
use payload::{Payload, PayloadSelector};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use storage::{CollectionConfig, PointSelector, PointWrite, Storage, Update, VectorSelector};

const CHILD_DIR_ENV: &str = "VR_CRASH_CHILD_DIR";
const CHILD_START_ENV: &str = "VR_CRASH_CHILD_START";
const TEST_NAME: &str = "acknowledged_operations_survive_sigkill";
/// Kills in CI; `VR_CRASH_KILLS` sets another number (the long run in docs/reliability.md).
const KILLS: u32 = 22;
/// Kills on one storage directory before the run starts a fresh one: each restart reopens
/// everything written so far, so a long run on one directory would spend its time loading.
const KILLS_PER_DIR: u32 = 100;

/// Where a kill is aimed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Aim {
    /// A random 20 to 400 ms after the child is ready.
    Anywhere,
    /// Just after an optimizer step starts (indexing, a rebuild, a merge).
    Optimizing,
    /// Just after a snapshot starts being taken.
    Snapshotting,
    /// Just after a restore from a snapshot starts.
    Restoring,
}

const AIMS: [Aim; 4] = [
    Aim::Anywhere,
    Aim::Optimizing,
    Aim::Snapshotting,
    Aim::Restoring,
];

impl Aim {
    /// The line of the child that says the moment has come.
    fn trigger(self) -> &'static str {
        match self {
            Aim::Anywhere => "",
            Aim::Optimizing => "optimizing",
            Aim::Snapshotting => "snapshotting",
            Aim::Restoring => "snapshot ",
        }
    }

    /// How long after the trigger the kill comes, at most: a step over ~100 points takes about
    /// a millisecond, a snapshot or a restore several.
    fn delay_us(self) -> u64 {
        match self {
            Aim::Anywhere => 1,
            Aim::Optimizing => 300,
            Aim::Snapshotting | Aim::Restoring => 2000,
        }
    }
}

/// Where the child was when it died, from the lines it printed (in order).
#[derive(Debug, Default)]
struct Phases {
    optimizing: bool,
    /// "snapshotting", "restoring", or "between" (sleeping or deleting an old snapshot).
    snapshot: &'static str,
}

impl Phases {
    fn read(&mut self, line: &str) {
        match line {
            "optimizing" => self.optimizing = true,
            "optimized" => self.optimizing = false,
            "snapshotting" => self.snapshot = "snapshotting",
            l if l.starts_with("snapshot ") => self.snapshot = "restoring",
            l if l.starts_with("restored ") => self.snapshot = "between",
            _ => {}
        }
    }

    fn inside(&self, aim: Aim) -> bool {
        match aim {
            Aim::Anywhere => true,
            Aim::Optimizing => self.optimizing,
            Aim::Snapshotting => self.snapshot == "snapshotting",
            Aim::Restoring => self.snapshot == "restoring",
        }
    }
}
const BATCH: u64 = 10;
/// Writer threads in the child, each with its own stream of operations over its own ids.
const WRITERS: u64 = 3;
/// Writer `w`'s ids start at `w · ID_SPACE`.
const ID_SPACE: u64 = 1 << 40;
const DIM: usize = 16;
/// Fixed queries for the recall check after each restart.
const QUERIES: u64 = 100;
/// `hnsw_ef` of the recall check: low enough that a damaged graph would show.
const RECALL_EF: usize = 32;

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

/// The ids of writer `w`'s batch `k`.
fn batch_ids(w: u64, k: u64) -> Vec<PointId> {
    let base = w * ID_SPACE;
    (base + k * BATCH..base + (k + 1) * BATCH)
        .map(PointId::Num)
        .collect()
}

/// A pseudo-random value in [0, 1) for `(id, d)` (splitmix64): every point its own vector,
/// so that recall means something.
fn unit(id: u64, d: u64) -> f32 {
    let mut z = id
        .wrapping_mul(DIM as u64)
        .wrapping_add(d)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 24) as f32
}

fn vector(id: u64) -> Vec<f32> {
    (0..DIM as u64).map(|d| unit(id, d)).collect()
}

fn query(q: u64) -> Vec<f32> {
    vector(u64::MAX / 2 + q)
}

fn search(c: &storage::Collection, q: &[f32], exact: bool) -> Vec<storage::ScoredPoint> {
    let mut params = index_core::SearchParams::top(10);
    params.exact = exact;
    params.hnsw_ef = Some(RECALL_EF);
    c.search(&storage::SearchRequest {
        vector_name: String::new(),
        query: storage::Query::Nearest(q.to_vec()),
        filter: None,
        params,
        with_payload: PayloadSelector::Nothing,
        with_vector: VectorSelector::Nothing,
        candidates: None,
    })
    .unwrap()
}

/// Recall@10 of approximate search over the fixed queries: a returned point counts when it is
/// no farther than the exact tenth (ties at equal distance count as found).
fn recall(c: &storage::Collection) -> f64 {
    let (mut found, mut total) = (0usize, 0usize);
    for q in 0..QUERIES {
        let q = query(q);
        let exact = search(c, &q, true);
        let Some(kth) = exact.last().map(|h| h.distance) else {
            continue;
        };
        let got = search(c, &q, false);
        found += got.iter().filter(|h| h.distance <= kth + 1e-5).count();
        total += exact.len();
    }
    if total == 0 {
        1.0
    } else {
        found as f64 / total as f64
    }
}

/// Writer `w`'s operation `k`.
fn update(w: u64, k: u64) -> Update {
    match op(k) {
        Op::Upsert(b) => Update::Upsert(
            batch_ids(w, b)
                .into_iter()
                .map(|id| {
                    let PointId::Num(n) = id else { unreachable!() };
                    let mut payload = Payload::new();
                    payload.insert("op".into(), json!(b));
                    PointWrite {
                        id,
                        vectors: vec![(String::new(), vector(n))],
                        payload,
                        sparse: Vec::new(),
                        multi: Vec::new(),
                    }
                })
                .collect(),
        ),
        Op::Delete(b) => Update::Delete(PointSelector::Ids(batch_ids(w, b))),
        Op::Mark(b) => Update::SetPayload {
            payload: json!({"marked": k}).as_object().unwrap().clone(),
            selector: PointSelector::Ids(batch_ids(w, b)),
            key: None,
        },
    }
}

fn open(dir: &Path) -> Storage {
    Storage::open(&dir.join("storage"), &dir.join("snapshots")).unwrap()
}

/// The child: `start[w]` is writer `w`'s first operation.
fn child(dir: &Path, start: &[u64]) {
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
                    // Graphs walked from the first indexed segment on (not scanned).
                    "hnsw_config": {"m": 8, "ef_construct": 32, "full_scan_threshold": 1},
                    "wal_config": {"wal_capacity_mb": 1},
                }))
                .unwrap(),
            )
            .unwrap(),
    };
    println!("ready");
    let deadline = Instant::now() + Duration::from_secs(30);
    std::thread::scope(|scope| {
        // Readers: approximate and exact searches all the while, so that kills land amid
        // searches over segments being sealed, indexed and swapped.
        scope.spawn(|| {
            let mut q = 0u64;
            while Instant::now() < deadline {
                let v = query(q % QUERIES);
                let approximate = search(&c, &v, false);
                let exact = search(&c, &v, true);
                assert!(approximate.len() <= 10 && exact.len() <= 10);
                q += 1;
            }
        });
        // Beside the writer: snapshots of `c` taken and restored into `r` in a loop, so that
        // kills land in snapshot creation and in a restore too.
        // The optimizer's steps as they start and end, for the kills aimed at them.
        scope.spawn(|| {
            let mut was = false;
            while Instant::now() < deadline {
                let running = c.optimizer_running();
                if running != was {
                    println!("{}", if running { "optimizing" } else { "optimized" });
                    was = running;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        });
        scope.spawn(|| {
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(30));
                println!("snapshotting");
                let snap = store.create_snapshot("c").unwrap();
                println!("snapshot {}", snap.name);
                let path = store.snapshot_path("c", &snap.name).unwrap();
                store.recover("r", &path, snap.checksum.as_deref()).unwrap();
                println!("restored {}", snap.name);
                for old in store.list_snapshots("c").unwrap() {
                    if old.name != snap.name {
                        store.delete_snapshot("c", &old.name).unwrap();
                    }
                }
            }
        });
        // The writers, each acknowledging its own operations in order.
        for (w, &first) in start.iter().enumerate() {
            let c = &c;
            scope.spawn(move || {
                let mut k = first;
                while Instant::now() < deadline {
                    // Printed under stdout's lock, in the order they happen: the parent reads
                    // from the lines which operations finished before others began.
                    println!("begin {w} {k}");
                    c.update(update(w as u64, k), true).unwrap();
                    println!("ack {w} {k}");
                    k += 1;
                }
            });
        }
    });
}

/// Each writer's points in collection `c` by id: the `marked` payload value (or none), for
/// writer `w`'s batches up to `up_to_op[w]`. Checks each point's vector and `op` payload
/// against what its operation wrote, and that the collection holds no other point.
fn contents(
    c: &storage::Collection,
    up_to_op: &[u64],
    what: &str,
) -> Vec<BTreeMap<PointId, Option<u64>>> {
    let mut found = 0;
    let by_writer = (0..WRITERS)
        .map(|w| {
            let base = w * ID_SPACE;
            let ids: Vec<PointId> = (base..base + (up_to_op[w as usize] + 1) * BATCH)
                .map(PointId::Num)
                .collect();
            let records = c.retrieve(&ids, &PayloadSelector::All, &VectorSelector::All);
            found += records.len();
            let mut actual = BTreeMap::new();
            for r in &records {
                let PointId::Num(n) = r.id else {
                    unreachable!()
                };
                let v = &r.vectors.as_ref().unwrap()[0].1;
                assert_eq!(v, &vector(n), "{what}: vector of point {n}");
                let p = r.payload.as_ref().unwrap();
                assert_eq!(
                    p["op"],
                    json!((n - base) / BATCH),
                    "{what}: payload of point {n}"
                );
                actual.insert(r.id, p.get("marked").and_then(|m| m.as_u64()));
            }
            actual
        })
        .collect();
    assert_eq!(
        c.count(None),
        found,
        "{what}: points beyond the operations sent"
    );
    by_writer
}

/// What writer `w`'s part of the collection must be after its operations `0..=last` (each
/// wholly).
fn expected(w: u64, last: Option<u64>) -> BTreeMap<PointId, Option<u64>> {
    let mut m = BTreeMap::new();
    let Some(last) = last else { return m };
    for k in 0..=last {
        match op(k) {
            Op::Upsert(b) => batch_ids(w, b).into_iter().for_each(|id| {
                m.insert(id, None);
            }),
            Op::Delete(b) => batch_ids(w, b).iter().for_each(|id| {
                m.remove(id);
            }),
            Op::Mark(b) => batch_ids(w, b).into_iter().for_each(|id| {
                if let Some(v) = m.get_mut(&id) {
                    *v = Some(k);
                }
            }),
        }
    }
    m
}

/// When each operation of a writer began and was acknowledged, in lines of the children's
/// output counted over the whole directory: writer `w`'s operation `k` → (begin, ack). An
/// operation re-sent after a kill (it was in flight and not applied) keeps its last begin; one
/// in flight and applied gets the kill as its acknowledgement (it was finished before anything
/// the next child began).
type Timeline = Vec<HashMap<u64, (u64, Option<u64>)>>;

/// Each writer's part of the state matches its operations `0..=acked[w]` or
/// `0..=acked[w]+1` exactly; returns which, per writer, and the recall of approximate search
/// over the recovered graphs.
fn verify(
    dir: &Path,
    acked: &[Option<u64>],
    timeline: &Timeline,
    kill: u32,
) -> (Vec<Option<u64>>, f64) {
    let store = open(dir);
    let Ok(c) = store.get("c") else {
        assert!(
            acked.iter().all(Option::is_none),
            "kill {kill}: the collection vanished after acknowledged writes"
        );
        return (acked.to_vec(), 1.0);
    };
    let next: Vec<u64> = acked.iter().map(|a| a.map_or(0, |a| a + 1)).collect();
    let actual = contents(&c, &next, &format!("kill {kill}"));
    let result: Vec<Option<u64>> = (0..WRITERS)
        .map(|w| {
            let (acked, next, actual) = (acked[w as usize], next[w as usize], &actual[w as usize]);
            if *actual == expected(w, acked) {
                acked
            } else if *actual == expected(w, Some(next)) {
                Some(next)
            } else {
                panic!(
                    "kill {kill}, writer {w}: state matches neither its operations 0..={acked:?} nor 0..={next} (an acknowledged write was lost or an operation was half applied): {} points",
                    actual.len()
                )
            }
        })
        .collect();
    // A restored copy, if one was made, is a whole snapshot: for each writer, the state after
    // one of its operations (a snapshot is taken between two of them), never a mix.
    if let Ok(r) = store.get("r") {
        let up_to: Vec<u64> = result.iter().map(|a| a.map_or(0, |a| a + 1)).collect();
        let copy = contents(&r, &up_to, &format!("kill {kill}, restored copy"));
        // Per writer, the operations the copy may end with: the first and the last that give
        // its state (an operation that deletes a batch returns the state of three before).
        let cuts: Vec<(Option<u64>, Option<u64>)> = copy
            .iter()
            .enumerate()
            .map(|(w, copy)| {
                let latest = copy.keys().map(|id| match id {
                    PointId::Num(n) => (n - w as u64 * ID_SPACE) / BATCH,
                    PointId::Uuid(_) => unreachable!(),
                });
                let marked = copy.values().flatten().copied();
                let matching: Vec<u64> = match latest.chain(marked).max() {
                    None => Vec::new(),
                    Some(m) => (m..=m + 3)
                        .filter(|&k| expected(w as u64, Some(k)) == *copy)
                        .collect(),
                };
                assert!(
                    copy.is_empty() || !matching.is_empty(),
                    "kill {kill}: writer {w}'s part of the restored copy is not the state after any one of its operations ({} points)",
                    copy.len()
                );
                (matching.first().copied(), matching.last().copied())
            })
            .collect();
        // And across the writers a cut that real time allows: no operation of one writer left
        // out that was acknowledged before an operation taken in from another began.
        for (w, &(first_in, _)) in cuts.iter().enumerate() {
            let Some(taken) = first_in else { continue };
            let began = timeline[w][&taken].0;
            for (v, &(_, last_in)) in cuts.iter().enumerate() {
                let left_out = last_in.map_or(0, |k| k + 1);
                if let Some(&(_, Some(acked_at))) = timeline[v].get(&left_out) {
                    assert!(
                        acked_at > began,
                        "kill {kill}: the restored copy holds writer {w}'s operation {taken} (begun at line {began}) but not writer {v}'s operation {left_out}, acknowledged before it (line {acked_at}): not a consistent cut"
                    );
                }
            }
        }
    }
    // Every snapshot listed is whole (its checksum verifies).
    for snap in store.list_snapshots("c").unwrap() {
        let path = store.snapshot_path("c", &snap.name).unwrap();
        storage::archive::verify_archive(&path)
            .unwrap_or_else(|e| panic!("kill {kill}: snapshot {} is damaged: {e}", snap.name));
    }
    let recall = recall(&c);
    drop(c);
    store.close().unwrap();
    (result, recall)
}

#[test]
fn acknowledged_operations_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let start: Vec<u64> = std::env::var(CHILD_START_ENV)
            .unwrap()
            .split(',')
            .map(|k| k.parse().unwrap())
            .collect();
        child(Path::new(&dir), &start);
        return;
    }
    let mut dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let seed = 0xc0ffee_u64;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut applied: Vec<Option<u64>> = vec![None; WRITERS as usize];
    let mut timeline: Timeline = vec![HashMap::new(); WRITERS as usize];
    // Lines read from the children on the current directory.
    let mut tick = 0u64;
    let mut last_recall: Option<f64> = None;
    let kills: u32 = std::env::var("VR_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(KILLS);
    // Kills aimed at each moment, and how many landed inside it.
    let mut aimed = [0u32; 4];
    let mut landed = [0u32; 4];
    for kill in 0..kills {
        if kill > 0 && kill % KILLS_PER_DIR == 0 {
            dir = tempfile::tempdir().unwrap();
            (applied, last_recall) = (vec![None; WRITERS as usize], None);
            (timeline, tick) = (vec![HashMap::new(); WRITERS as usize], 0);
        }
        let aim = AIMS[kill as usize % AIMS.len()];
        let start: Vec<String> = applied
            .iter()
            .map(|a| a.map_or(0, |a| a + 1).to_string())
            .collect();
        let mut child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_START_ENV, start.join(","))
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
        // Wait until it is ready, then until the moment aimed at (keeping the lines read).
        let mut lines = Vec::new();
        let ready_by = Instant::now() + Duration::from_secs(30);
        loop {
            let line = rx
                .recv_timeout(ready_by.saturating_duration_since(Instant::now()))
                .expect("child never ready");
            if line.ends_with("ready") {
                break;
            }
        }
        if aim == Aim::Anywhere {
            std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
        } else {
            // A child that never gets there (its 30 s are up) is killed where it is.
            let by = Instant::now() + Duration::from_secs(20);
            while let Ok(line) = rx.recv_timeout(by.saturating_duration_since(Instant::now())) {
                let hit = line.starts_with(aim.trigger());
                lines.push(line);
                if hit {
                    break;
                }
            }
            std::thread::sleep(Duration::from_micros(rng.random_range(0..aim.delay_us())));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        let mut acked = applied.clone();
        let mut phases = Phases {
            snapshot: "none yet",
            ..Phases::default()
        };
        for line in &lines {
            tick += 1;
            let writer_op = |prefix: &str| {
                let (w, k) = line.strip_prefix(prefix)?.split_once(' ')?;
                Some((w.parse::<usize>().unwrap(), k.parse::<u64>().unwrap()))
            };
            if let Some((w, k)) = writer_op("begin ") {
                timeline[w].insert(k, (tick, None));
            } else if let Some((w, k)) = writer_op("ack ") {
                acked[w] = Some(k);
                timeline[w]
                    .get_mut(&k)
                    .expect("begun before acknowledged")
                    .1 = Some(tick);
            }
            phases.read(line);
        }
        let a = aim as usize;
        aimed[a] += 1;
        landed[a] += u32::from(phases.inside(aim));
        let recall;
        (applied, recall) = verify(dir.path(), &acked, &timeline, kill);
        // An operation in flight that the restart found applied was finished at the kill.
        for (w, (&now, &before)) in applied.iter().zip(&acked).enumerate() {
            if now != before {
                let k = now.expect("applied through at least what was acknowledged");
                timeline[w].get_mut(&k).expect("begun before the kill").1 = Some(tick);
            }
        }
        eprintln!(
            "kill {kill} (aimed {aim:?}, landed inside: {}): acknowledged through {acked:?}, state \
             through {applied:?}, optimizer step {}, snapshot loop {}, recall@10 {recall:.3} at ef \
             {RECALL_EF} (seed {seed})",
            phases.inside(aim),
            if phases.optimizing { "running" } else { "idle" },
            phases.snapshot,
        );
        assert!(
            recall >= 0.9,
            "kill {kill}: recall {recall:.3} over the recovered graphs"
        );
        if let Some(before) = last_recall {
            assert!(
                recall >= before - 0.02,
                "kill {kill}: recall {recall:.3} after the restart, {before:.3} after the last"
            );
        }
        last_recall = Some(recall);
    }
    eprintln!("kills aimed by moment {AIMS:?}: {aimed:?}; landed inside it: {landed:?}");
    // Each moment was really hit: a harness whose aimed kills all land elsewhere tests only
    // the kills anywhere.
    for (i, aim) in AIMS.iter().enumerate().skip(1) {
        assert!(
            landed[i] > 0,
            "no kill aimed at {aim:?} landed inside it ({} aimed)",
            aimed[i]
        );
    }
    assert!(
        applied.iter().all(|a| a.is_some_and(|a| a > 40)),
        "the child made too little progress to test anything: {applied:?}"
    );
}
