//! Background index builds run below the writes while writes arrive, and level with them once
//! writes pause (`storage::priority`). A binary of its own: the priority is process-wide, and
//! other tests' writes in the same process would keep it lowered.

#![cfg(target_os = "linux")]

use index_core::PointId;
use serde_json::json;
use std::time::{Duration, Instant};
use storage::{CollectionConfig, PointWrite, Storage, Update};

/// (thread id, nice value) of this process's optimizer threads, read from `/proc`.
fn optimizer_threads() -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else {
            continue;
        };
        if !comm.starts_with("optimizer-") {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(task.join("stat")) else {
            continue;
        };
        // The name may hold spaces: count fields after its closing parenthesis (nice is the
        // 19th field of `stat`, the 17th after the name).
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let nice = rest.split(' ').nth(16).unwrap().parse().unwrap();
        out.push((task.display().to_string(), nice));
    }
    out.sort();
    out
}

fn own_nice() -> i32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(16).unwrap().parse().unwrap()
}

#[test]
fn index_builds_run_lowered_while_writes_arrive_and_level_once_they_pause() {
    let dir = tempfile::tempdir().unwrap();
    let store = Storage::open(&dir.path().join("storage"), &dir.path().join("snapshots")).unwrap();
    let config = CollectionConfig::from_json(&json!({
        "vectors": {"size": 4, "distance": "Cosine"},
        "optimizers_config": {"max_optimization_threads": 2}
    }))
    .unwrap();
    let c = store.create("points", config).unwrap();
    storage::priority::set_background_nice(10);
    let base = own_nice();
    // The pool starts its threads without waiting for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while optimizer_threads().len() < 2 {
        assert!(Instant::now() < deadline, "{:?}", optimizer_threads());
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = optimizer_threads();
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(before.iter().all(|&(_, n)| n == base), "{before:?}");

    let mut next = 0u64;
    let mut write = || {
        let points = (0..10)
            .map(|_| {
                next += 1;
                PointWrite {
                    id: PointId::Num(next),
                    vectors: vec![(String::new(), vec![next as f32, 1.0, 2.0, 3.0])],
                    payload: Default::default(),
                    sparse: Vec::new(),
                    multi: Vec::new(),
                }
            })
            .collect();
        c.update(Update::Upsert(points), false).unwrap();
    };
    write();
    if !storage::priority::may_lower() {
        // This process may not put a thread back up: nothing is lowered. `.ci/run` sets
        // VR_REQUIRE_NICE=1 where `renice` shows it may, so that there this cannot pass unseen.
        assert!(
            std::env::var("VR_REQUIRE_NICE").is_err(),
            "VR_REQUIRE_NICE is set, but the process may not lower its threads"
        );
        assert!(!storage::priority::lowered());
        assert!(optimizer_threads().iter().all(|&(_, n)| n == base));
        eprintln!("SKIPPED: this process may not raise a thread's priority back");
        return;
    }
    let lowered = (base + storage::priority::background_nice()).min(19);
    assert!(lowered > base);
    // A thread named but not yet registered lowers itself as it registers.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !optimizer_threads().iter().all(|&(_, n)| n == lowered) {
        assert!(Instant::now() < deadline, "{:?}", optimizer_threads());
        std::thread::sleep(Duration::from_millis(10));
    }
    // Writes keep arriving for longer than the pause: they stay lowered.
    let until = Instant::now() + storage::priority::WRITES_PAUSED * 2;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        write();
        let now = optimizer_threads();
        assert!(now.iter().all(|&(_, n)| n == lowered), "{now:?}");
    }
    // Writes pause: they are put back.
    let deadline = Instant::now() + storage::priority::WRITES_PAUSED * 5;
    loop {
        let now = optimizer_threads();
        if now.iter().all(|&(_, n)| n == base) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still lowered after writes paused: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!storage::priority::lowered());
    // The writing thread's own priority never moved.
    assert_eq!(own_nice(), base);
    // A new burst lowers them again; closing the collection ends its threads, and the
    // register forgets them (a later write changes no thread that is gone).
    write();
    assert!(optimizer_threads().iter().all(|&(_, n)| n == lowered));
    drop(c);
    store.close().unwrap();
    drop(store);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !optimizer_threads().is_empty() {
        assert!(
            Instant::now() < deadline,
            "optimizer threads outlived the store"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
