//! The write-ahead log: numbering, rotation, truncation, recovery from torn tails, refusal of
//! real corruption, and group commit under concurrent writers.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use storage::wal::{Wal, WalOptions, MAX_RECORD_BODY};
use storage::{StorageError, StorageErrorKind};

const SEGMENT_HEADER_LEN: u64 = 24;
const RECORD_HEADER_LEN: u64 = 16;

fn small_segments() -> WalOptions {
    WalOptions {
        segment_bytes: 1024,
    }
}

/// A body whose length and bytes depend on `seq` and `seed`, so a test can check what it reads.
fn body_for(seed: u64, seq: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let len = rng.random_range(0..300);
    (0..len).map(|_| rng.random()).collect()
}

fn append_bodies(wal: &Wal, seed: u64, count: u64) {
    for _ in 0..count {
        let seq = wal.last_seq() + 1;
        assert_eq!(wal.append(&body_for(seed, seq)).unwrap(), seq);
    }
}

fn replay_all(wal: &Wal, after: u64) -> Vec<(u64, Vec<u8>)> {
    let mut records = Vec::new();
    wal.replay(after, |seq, body| {
        records.push((seq, body.to_vec()));
        Ok(())
    })
    .unwrap();
    records
}

/// Checks that `records` are exactly `first..=last` with the bodies `body_for(seed, _)`.
fn assert_records(records: &[(u64, Vec<u8>)], seed: u64, first: u64, last: u64) {
    let seqs: Vec<u64> = records.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (first..=last).collect::<Vec<_>>());
    for (seq, body) in records {
        assert_eq!(body, &body_for(seed, *seq), "body of record {seq}");
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_str().unwrap();
            name.starts_with("wal-") && name.ends_with(".log")
        })
        .collect();
    files.sort();
    files
}

fn first_seq_of(segment: &Path) -> u64 {
    let name = segment.file_name().unwrap().to_str().unwrap();
    name["wal-".len()..name.len() - ".log".len()]
        .parse()
        .unwrap()
}

/// Byte offsets of the records in a segment file, read with the documented layout.
fn record_offsets(segment: &Path) -> Vec<u64> {
    let bytes = fs::read(segment).unwrap();
    let mut offsets = Vec::new();
    let mut at = SEGMENT_HEADER_LEN as usize;
    while at < bytes.len() {
        offsets.push(at as u64);
        let body_len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += RECORD_HEADER_LEN as usize + body_len;
    }
    assert_eq!(
        at,
        bytes.len(),
        "segment {} parses to its end",
        segment.display()
    );
    offsets
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for segment in segment_files(from) {
        fs::copy(&segment, to.join(segment.file_name().unwrap())).unwrap();
    }
}

fn expect_corrupt(result: Result<Wal, StorageError>, file: &Path, context: &str) -> String {
    match result {
        Err(StorageError::Corrupt { path, reason }) => {
            assert_eq!(
                path, file,
                "{context}: corruption reported in the wrong file"
            );
            reason
        }
        Err(other) => panic!("{context}: expected Corrupt, got {other}"),
        Ok(_) => panic!("{context}: the damaged log opened"),
    }
}

#[test]
fn records_round_trip_across_segment_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let seed = 1;
    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!((wal.last_seq(), wal.first_seq()), (0, None));
    append_bodies(&wal, seed, 300);
    wal.sync(300).unwrap();

    let segments = segment_files(dir.path());
    assert!(segments.len() > 20, "only {} segments", segments.len());
    for pair in segments.windows(2) {
        let size = fs::metadata(&pair[0]).unwrap().len();
        let next_first = first_seq_of(&pair[1]);
        // A sealed segment stays under the limit unless it holds one record only.
        let records = next_first - first_seq_of(&pair[0]);
        assert!(
            size <= 1024 || records == 1,
            "{} is {size} bytes",
            pair[0].display()
        );
    }
    let on_disk: u64 = segments
        .iter()
        .map(|s| fs::metadata(s).unwrap().len())
        .sum();
    assert_eq!(wal.size_bytes(), on_disk);

    assert_records(&replay_all(&wal, 0), seed, 1, 300);
    assert_records(&replay_all(&wal, 137), seed, 138, 300);
    assert!(replay_all(&wal, 300).is_empty());
    assert_eq!(wal.first_seq(), Some(1));

    drop(wal);
    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    assert_records(&replay_all(&wal, 0), seed, 1, 300);
    assert_eq!(wal.size_bytes(), on_disk);
}

#[test]
fn reopening_continues_the_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let seed = 2;
    {
        let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        append_bodies(&wal, seed, 10);
        wal.sync(10).unwrap();
    }
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.last_seq(), 10);
    assert_eq!(wal.first_seq(), Some(1));
    assert_eq!(wal.append(&body_for(seed, 11)).unwrap(), 11);
    drop(wal);

    // Reopening with a different segment size keeps the existing files and numbering.
    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    append_bodies(&wal, seed, 40);
    assert_records(&replay_all(&wal, 0), seed, 1, 51);
}

#[test]
fn a_restarted_log_numbers_after_the_given_record_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let seed = 12;
    {
        let wal = Wal::open(dir.path(), small_segments()).unwrap();
        append_bodies(&wal, seed, 30);
        assert!(segment_files(dir.path()).len() > 1);
        // Behind what it feeds: records through 100 were applied elsewhere.
        wal.restart_after(100).unwrap();
        assert_eq!((wal.last_seq(), wal.first_seq()), (100, None));
        assert_eq!(wal.durable_seq(), 100);
        assert_eq!(segment_files(dir.path()).len(), 1);
        assert_eq!(wal.append(b"next").unwrap(), 101);
        wal.sync(101).unwrap();
        // Never backwards.
        let err = wal.restart_after(50).unwrap_err();
        assert_eq!(err.kind(), StorageErrorKind::InvalidInput, "{err}");
    }
    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(wal.last_seq(), 101);
    assert_eq!(replay_all(&wal, 0), vec![(101, b"next".to_vec())]);
}

#[test]
fn an_empty_log_reopens_empty() {
    let dir = tempfile::tempdir().unwrap();
    drop(Wal::open(dir.path(), WalOptions::default()).unwrap());
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!((wal.last_seq(), wal.first_seq()), (0, None));
    assert!(replay_all(&wal, 0).is_empty());
    assert_eq!(wal.append(b"first").unwrap(), 1);
}

#[test]
fn truncation_deletes_only_fully_covered_segments() {
    let dir = tempfile::tempdir().unwrap();
    let seed = 3;
    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    append_bodies(&wal, seed, 200);
    let segments = segment_files(dir.path());
    let firsts: Vec<u64> = segments.iter().map(|s| first_seq_of(s)).collect();

    // Through the middle of segment 5: segments 0..5 go, segment 5 stays whole.
    let through = firsts[5] + 1;
    assert!(through < firsts[6] - 1);
    wal.truncate_through(through).unwrap();
    let left = segment_files(dir.path());
    assert_eq!(left, segments[5..].to_vec());
    assert_eq!(wal.first_seq(), Some(firsts[5]));
    assert_records(&replay_all(&wal, 0), seed, firsts[5], 200);
    let on_disk: u64 = left.iter().map(|s| fs::metadata(s).unwrap().len()).sum();
    assert_eq!(wal.size_bytes(), on_disk);

    // Exactly the last seq of segment 6: it goes too.
    wal.truncate_through(firsts[7] - 1).unwrap();
    assert_eq!(segment_files(dir.path()), segments[7..].to_vec());

    // Everything: the active segment stays, and so does the numbering.
    wal.truncate_through(u64::MAX).unwrap();
    let active = segment_files(dir.path());
    assert_eq!(active, vec![segments.last().unwrap().clone()]);
    assert_eq!(wal.first_seq(), Some(first_seq_of(&active[0])));
    assert_eq!(wal.append(&body_for(seed, 201)).unwrap(), 201);
    drop(wal);

    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(wal.last_seq(), 201);
    assert_records(&replay_all(&wal, 0), seed, first_seq_of(&active[0]), 201);
    assert_eq!(wal.append(&body_for(seed, 202)).unwrap(), 202);
}

#[test]
fn numbering_survives_truncating_everything_after_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    // A record larger than a segment forces a rotation on the next append, leaving the
    // oversized one alone in a sealed segment.
    assert_eq!(wal.append(&[7u8; 2000]).unwrap(), 1);
    assert_eq!(wal.append(&[8u8; 2000]).unwrap(), 2);
    assert_eq!(segment_files(dir.path()).len(), 2);
    wal.truncate_through(2).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(wal.first_seq(), Some(2));
    drop(wal);
    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(wal.append(b"x").unwrap(), 3);
}

#[test]
fn a_torn_last_record_is_cut_at_every_length() {
    let source = tempfile::tempdir().unwrap();
    let seed = 4;
    {
        let wal = Wal::open(source.path(), small_segments()).unwrap();
        append_bodies(&wal, seed, 30);
        // The last record is large enough to be torn inside header, seq and body.
        assert_eq!(wal.append(&[0xAB; 120]).unwrap(), 31);
        wal.sync(31).unwrap();
    }
    let segments = segment_files(source.path());
    let last_segment = segments.last().unwrap();
    let last_record_at = *record_offsets(last_segment).last().unwrap();
    let full_len = fs::metadata(last_segment).unwrap().len();
    let scratch = tempfile::tempdir().unwrap();

    for cut in last_record_at..full_len {
        let dir = scratch.path().join(format!("cut-{cut}"));
        copy_dir(source.path(), &dir);
        let torn = dir.join(last_segment.file_name().unwrap());
        fs::OpenOptions::new()
            .write(true)
            .open(&torn)
            .unwrap()
            .set_len(cut)
            .unwrap();

        let wal = Wal::open(&dir, small_segments()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(wal.last_seq(), 30, "cut at {cut}");
        assert_eq!(
            fs::metadata(&torn).unwrap().len(),
            last_record_at,
            "cut at {cut}"
        );
        assert_records(&replay_all(&wal, 0), seed, 1, 30);
        assert_eq!(wal.append(b"after the tear").unwrap(), 31);
        drop(wal);
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_zero_filled_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let seed = 5;
    {
        let wal = Wal::open(dir.path(), small_segments()).unwrap();
        append_bodies(&wal, seed, 40);
    }
    let last_segment = segment_files(dir.path()).pop().unwrap();
    let valid_len = fs::metadata(&last_segment).unwrap().len();
    // A file system that preallocated the file, or a crash after the size but before the data
    // reached the disk: zeros to the end, over 64 KiB.
    let mut bytes = fs::read(&last_segment).unwrap();
    bytes.resize(bytes.len() + 70_000, 0);
    fs::write(&last_segment, &bytes).unwrap();

    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(wal.last_seq(), 40);
    assert_eq!(fs::metadata(&last_segment).unwrap().len(), valid_len);
    assert_records(&replay_all(&wal, 0), seed, 1, 40);
    drop(wal);

    // Zeros over the last record itself (its size reached the disk, its data did not).
    let last_record_at = *record_offsets(&last_segment).last().unwrap();
    let mut bytes = fs::read(&last_segment).unwrap();
    bytes[last_record_at as usize..].fill(0);
    bytes.resize(bytes.len() + 4096, 0);
    fs::write(&last_segment, &bytes).unwrap();
    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(wal.last_seq(), 39);
    assert_eq!(fs::metadata(&last_segment).unwrap().len(), last_record_at);
}

#[test]
fn a_flipped_byte_followed_by_valid_records_is_corruption() {
    let source = tempfile::tempdir().unwrap();
    let seed = 6;
    {
        let wal = Wal::open(source.path(), WalOptions::default()).unwrap();
        append_bodies(&wal, seed, 12);
    }
    let segment = segment_files(source.path()).pop().unwrap();
    let offsets = record_offsets(&segment);
    // Record 6 of 12: every byte of it, header and body.
    let (start, end) = (offsets[5], offsets[6]);
    let original = fs::read(&segment).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    for at in start..end {
        let dir = scratch.path().join(format!("flip-{at}"));
        copy_dir(source.path(), &dir);
        let damaged_file = dir.join(segment.file_name().unwrap());
        let mut damaged = original.clone();
        damaged[at as usize] ^= 0x20;
        fs::write(&damaged_file, &damaged).unwrap();

        let reason = expect_corrupt(
            Wal::open(&dir, WalOptions::default()),
            &damaged_file,
            &format!("byte {at} flipped"),
        );
        assert!(
            reason.contains(&format!("offset {start}")),
            "byte {at}: {reason}"
        );
        // Nothing was cut: the damaged file is exactly as it was.
        assert_eq!(fs::read(&damaged_file).unwrap(), damaged, "byte {at}");
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn damage_in_an_earlier_segment_is_corruption() {
    let source = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(source.path(), small_segments()).unwrap();
        append_bodies(&wal, 7, 60);
    }
    let segments = segment_files(source.path());
    assert!(segments.len() >= 3);
    let scratch = tempfile::tempdir().unwrap();
    let open_damaged = |name: &str, damage: &dyn Fn(&Path)| {
        let dir = scratch.path().join(name);
        copy_dir(source.path(), &dir);
        damage(&dir);
        Wal::open(&dir, small_segments())
    };
    let first = |dir: &Path| dir.join(segments[0].file_name().unwrap());
    let second = |dir: &Path| dir.join(segments[1].file_name().unwrap());

    // The last byte of the first segment: a "tail", but not of the last segment.
    let result = open_damaged("flip", &|dir| {
        let mut bytes = fs::read(first(dir)).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(first(dir), bytes).unwrap();
    });
    expect_corrupt(result, &first(&scratch.path().join("flip")), "flipped tail");

    // A torn end of an earlier segment.
    let result = open_damaged("short", &|dir| {
        let file = fs::OpenOptions::new().write(true).open(first(dir)).unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len - 3).unwrap();
    });
    expect_corrupt(result, &first(&scratch.path().join("short")), "short tail");

    // A damaged segment header.
    let result = open_damaged("header", &|dir| {
        let mut bytes = fs::read(second(dir)).unwrap();
        bytes[13] ^= 1;
        fs::write(second(dir), bytes).unwrap();
    });
    expect_corrupt(result, &second(&scratch.path().join("header")), "header");

    // A whole segment missing: a gap in the numbering.
    let result = open_damaged("gap", &|dir| fs::remove_file(second(dir)).unwrap());
    let third = scratch
        .path()
        .join("gap")
        .join(segments[2].file_name().unwrap());
    let reason = expect_corrupt(result, &third, "missing segment");
    assert!(reason.contains("missing"), "{reason}");

    // A segment renamed so its name disagrees with its header.
    let result = open_damaged("renamed", &|dir| {
        let last = segments.last().unwrap();
        let first_seq = first_seq_of(last);
        fs::rename(
            dir.join(last.file_name().unwrap()),
            dir.join(format!("wal-{:020}.log", first_seq + 1)),
        )
        .unwrap();
    });
    assert!(matches!(result, Err(StorageError::Corrupt { .. })));
}

#[test]
fn a_valid_record_out_of_sequence_is_corruption_even_at_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        append_bodies(&wal, 8, 5);
    }
    let segment = segment_files(dir.path()).pop().unwrap();
    let offsets = record_offsets(&segment);
    let mut bytes = fs::read(&segment).unwrap();
    // Repeat record 5 after itself: checksums pass, the sequence does not.
    let last_record = bytes[offsets[4] as usize..].to_vec();
    bytes.extend_from_slice(&last_record);
    fs::write(&segment, &bytes).unwrap();
    let reason = expect_corrupt(
        Wal::open(dir.path(), WalOptions::default()),
        &segment,
        "duplicate",
    );
    assert!(reason.contains("seq 5"), "{reason}");
}

#[test]
fn concurrent_appenders_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), WalOptions::default()).unwrap());
    let threads = 8;
    let per_thread = 100;
    let fsyncs_before = wal.fsync_count();
    let acknowledged: Vec<Vec<(u64, Vec<u8>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let wal = Arc::clone(&wal);
                scope.spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..per_thread {
                        let body = format!("thread {thread} record {i}").into_bytes();
                        let seq = wal.append(&body).unwrap();
                        wal.sync(seq).unwrap();
                        acked.push((seq, body));
                    }
                    acked
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let syncs = threads * per_thread;
    let fsyncs = wal.fsync_count() - fsyncs_before;
    assert!(fsyncs < syncs, "{fsyncs} fsyncs for {syncs} syncs");
    assert!(fsyncs > 0);

    let mut all: Vec<(u64, Vec<u8>)> = acknowledged.into_iter().flatten().collect();
    all.sort();
    let seqs: Vec<u64> = all.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=syncs).collect::<Vec<_>>());
    drop(wal);
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(replay_all(&wal, 0), all);
}

#[test]
fn bad_calls_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    // An oversized body is refused before anything is written (the zeroed allocation is lazy).
    let huge = vec![0u8; MAX_RECORD_BODY + 1];
    let error = wal.append(&huge).unwrap_err();
    assert_eq!(error.kind(), StorageErrorKind::InvalidInput, "{error}");
    assert_eq!(wal.last_seq(), 0);

    assert!(wal.sync(0).is_ok());
    let error = wal.sync(1).unwrap_err();
    assert_eq!(error.kind(), StorageErrorKind::InvalidInput, "{error}");
    wal.append(b"a").unwrap();
    wal.sync(1).unwrap();

    // A second handle on the same directory would interleave sequence numbers.
    let error = Wal::open(dir.path(), WalOptions::default()).unwrap_err();
    assert!(matches!(error, StorageError::Io { .. }), "{error}");

    let error = Wal::open(dir.path(), WalOptions { segment_bytes: 10 }).unwrap_err();
    assert_eq!(error.kind(), StorageErrorKind::InvalidInput, "{error}");
}

#[test]
fn replay_stops_at_the_first_callback_error() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    append_bodies(&wal, 9, 50);
    let mut seen = Vec::new();
    let result = wal.replay(10, |seq, _| {
        seen.push(seq);
        if seq == 20 {
            Err(StorageError::InvalidInput("stop".to_string()))
        } else {
            Ok(())
        }
    });
    assert!(matches!(result, Err(StorageError::InvalidInput(_))));
    assert_eq!(seen, (11..=20).collect::<Vec<_>>());
}

#[test]
fn replay_notices_damage_after_open() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    append_bodies(&wal, 10, 50);
    let first = segment_files(dir.path()).remove(0);
    let offsets = record_offsets(&first);
    let mut bytes = fs::read(&first).unwrap();
    bytes[offsets[1] as usize + RECORD_HEADER_LEN as usize - 1] ^= 0x40;
    fs::write(&first, bytes).unwrap();
    let error = wal.replay(0, |_, _| Ok(())).unwrap_err();
    match error {
        StorageError::Corrupt { path, .. } => assert_eq!(path, first),
        other => panic!("expected Corrupt, got {other}"),
    }
}

#[test]
fn the_log_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Wal>();
}
