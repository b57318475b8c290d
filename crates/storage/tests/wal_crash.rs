//! A real crash test of the write-ahead log: a child process appends and syncs from several
//! threads, printing each sequence number once `sync` acknowledged it; the parent kills it with
//! SIGKILL at random moments, reopens the log and checks that every acknowledged record is
//! there with the right body, with no gap.
//!
//! The child is this test binary itself, re-executed with [`CHILD_DIR_ENV`] set: an example
//! binary has no `CARGO_BIN_EXE_` path to find it by, and the test binary is always built.
//! Unix only: SIGKILL is what the test is about.

#![cfg(unix)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::wal::{Wal, WalOptions};

const CHILD_DIR_ENV: &str = "VR_WAL_CRASH_CHILD_DIR";
const CHILD_RUN_ENV: &str = "VR_WAL_CRASH_CHILD_RUN";
const TEST_NAME: &str = "acknowledged_records_survive_sigkill";
const KILLS: u32 = 24;
const CHILD_THREADS: u32 = 4;
/// Records the child keeps behind its truncation point.
const KEEP_BEHIND: u64 = 300;
/// A child left alone (its parent died) stops by itself.
const CHILD_LIFETIME: Duration = Duration::from_secs(30);

fn options() -> WalOptions {
    // Small segments, so kills also land in rotations and truncations.
    WalOptions {
        segment_bytes: 16 << 10,
    }
}

/// The body a record written by `thread` of child `run` as its `counter`-th gets: its length
/// varies, and its bytes name the writer, so a misplaced body cannot pass.
fn body(run: u32, thread: u32, counter: u64) -> Vec<u8> {
    let seed = (u64::from(run) << 40) ^ (u64::from(thread) << 32) ^ counter;
    let mut rng = StdRng::seed_from_u64(seed);
    let len = rng.random_range(16..600);
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(&run.to_le_bytes());
    body.extend_from_slice(&thread.to_le_bytes());
    body.extend_from_slice(&counter.to_le_bytes());
    body.resize_with(len, || rng.random());
    body
}

/// The child: append, sync, acknowledge, until killed.
fn run_child(dir: &Path, run: u32) {
    let wal = Arc::new(Wal::open(dir, options()).expect("child opens the log"));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..CHILD_THREADS {
            let wal = Arc::clone(&wal);
            scope.spawn(move || {
                let stdout = std::io::stdout();
                for counter in 0.. {
                    if started.elapsed() > CHILD_LIFETIME {
                        return;
                    }
                    let seq = wal.append(&body(run, thread, counter)).expect("append");
                    wal.sync(seq).expect("sync");
                    // One write per line, so a kill cannot interleave two lines; the END marker
                    // tells a whole line from a cut one.
                    let line = format!("ACK {seq} {run} {thread} {counter} END\n");
                    let mut out = stdout.lock();
                    out.write_all(line.as_bytes()).expect("stdout");
                    out.flush().expect("stdout");
                    drop(out);
                    if thread == 0 && counter % 50 == 49 {
                        // Announced before it starts: records through `through` may vanish
                        // from here on.
                        let through = wal.last_seq().saturating_sub(KEEP_BEHIND);
                        let line = format!("TRUNC {through} END\n");
                        let mut out = stdout.lock();
                        out.write_all(line.as_bytes()).expect("stdout");
                        out.flush().expect("stdout");
                        drop(out);
                        wal.truncate_through(through).expect("truncate");
                    }
                }
            });
        }
    });
}

/// What the parent learned from the children's output.
#[derive(Default)]
struct Acknowledged {
    /// seq → (run, thread, counter).
    records: BTreeMap<u64, (u32, u32, u64)>,
    /// The highest truncation point any child announced.
    truncated_through: u64,
}

impl Acknowledged {
    fn read_line(&mut self, line: &str) {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["ACK", seq, run, thread, counter, "END"] => {
                let seq: u64 = seq.parse().unwrap();
                let writer = (
                    run.parse().unwrap(),
                    thread.parse().unwrap(),
                    counter.parse().unwrap(),
                );
                let earlier = self.records.insert(seq, writer);
                assert!(
                    earlier.is_none(),
                    "seq {seq} acknowledged twice: {earlier:?} and {writer:?}"
                );
            }
            ["TRUNC", through, "END"] => {
                self.truncated_through = self.truncated_through.max(through.parse().unwrap());
            }
            // A line cut by the kill was never acknowledged.
            _ => {}
        }
    }
}

/// Reopens the log as recovery would and checks it against what was acknowledged.
fn verify(dir: &Path, acknowledged: &Acknowledged, round: u32) {
    let wal = Wal::open(dir, options()).unwrap_or_else(|e| panic!("round {round}: reopen: {e}"));
    let mut found = BTreeMap::new();
    let mut previous = None;
    wal.replay(0, |seq, body| {
        if let Some(previous) = previous {
            assert_eq!(seq, previous + 1, "round {round}: gap after {previous}");
        }
        previous = Some(seq);
        found.insert(seq, body.to_vec());
        Ok(())
    })
    .unwrap_or_else(|e| panic!("round {round}: replay: {e}"));

    let max_acknowledged = acknowledged
        .records
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0);
    assert!(
        wal.last_seq() >= max_acknowledged,
        "round {round}: last seq went back"
    );
    for (&seq, &(run, thread, counter)) in &acknowledged.records {
        if seq <= acknowledged.truncated_through {
            continue;
        }
        let stored = found
            .get(&seq)
            .unwrap_or_else(|| panic!("round {round}: acknowledged record {seq} is lost"));
        assert!(
            stored == &body(run, thread, counter),
            "round {round}: record {seq} does not hold run {run} thread {thread} #{counter}"
        );
    }
}

#[test]
fn acknowledged_records_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let run = std::env::var(CHILD_RUN_ENV).unwrap().parse().unwrap();
        run_child(Path::new(&dir), run);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A fresh seed each run (kill timings differ anyway); VR_WAL_CRASH_SEED repeats one.
    let seed: u64 = match std::env::var("VR_WAL_CRASH_SEED") {
        Ok(seed) => seed.parse().expect("VR_WAL_CRASH_SEED is a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let exe = std::env::current_exe().unwrap();
    let mut acknowledged = Acknowledged::default();
    for round in 0..KILLS {
        let before = acknowledged.records.len();
        let mut child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_RUN_ENV, round.to_string())
            .stdout(Stdio::piped())
            // A child that fails on its own shows why here.
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Read while the child runs, so a full pipe never stalls it.
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(20..250)));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "seed {seed} round {round}: the child ended before it was killed: {status}"
        );
        for line in reader.join().unwrap() {
            acknowledged.read_line(&line);
        }
        verify(dir.path(), &acknowledged, round);
        eprintln!(
            "seed {seed} round {round}: {} acknowledged, {} in total",
            acknowledged.records.len() - before,
            acknowledged.records.len()
        );
    }
    assert!(
        acknowledged.records.len() > 200,
        "seed {seed}: only {} records acknowledged in {KILLS} runs: the test proved little",
        acknowledged.records.len()
    );
}
