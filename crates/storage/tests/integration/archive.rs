//! Snapshot archives: round trips, every kind of damage refused before anything is written,
//! and names that would escape the destination.

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use storage::archive::{
    sha256_file, unpack_archive, verify_archive, write_archive, ArchiveEntry, ARCHIVE_MAGIC,
    ARCHIVE_VERSION,
};
use storage::{StorageError, StorageErrorKind};

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

/// Writes `files` (name, contents) under `dir/src` and returns the list `write_archive` takes.
fn source_files(dir: &Path, files: &[(&str, Vec<u8>)]) -> Vec<(String, PathBuf)> {
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    files
        .iter()
        .enumerate()
        .map(|(i, (name, contents))| {
            let path = src.join(format!("file-{i}"));
            fs::write(&path, contents).unwrap();
            (name.to_string(), path)
        })
        .collect()
}

/// Names in `dir`, sorted: shows leftovers such as temporary files.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn files_round_trip_through_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("collection.json", b"{\"vectors\":{\"size\":4}}".to_vec()),
        ("segments/0/empty.bin", Vec::new()),
        ("segments/0/vectors.f32", random_bytes(1, 5 << 20)),
        ("segments/1/deep/er/ids.bin", random_bytes(2, 12_345)),
        ("wal/wal-00000000000000000001.log", random_bytes(3, 1)),
    ];
    let sources = source_files(dir.path(), &files);
    let archive = dir.path().join("snap.vrsnap");
    let (sha256, size) = write_archive(&archive, &sources).unwrap();
    assert_eq!(size, fs::metadata(&archive).unwrap().len());
    assert_eq!(sha256, sha256_file(&archive).unwrap());
    assert_eq!(
        sha256,
        format!("{:x}", Sha256::digest(fs::read(&archive).unwrap()))
    );
    assert_eq!(sha256.len(), 64);
    // Nothing but the archive and the sources: the temporary file was renamed away.
    assert_eq!(listing(dir.path()), vec!["snap.vrsnap", "src"]);

    let expected: Vec<ArchiveEntry> = files
        .iter()
        .map(|(name, contents)| ArchiveEntry {
            path: name.to_string(),
            len: contents.len() as u64,
        })
        .collect();
    assert_eq!(verify_archive(&archive).unwrap(), expected);
    let dest = dir.path().join("restored");
    assert_eq!(unpack_archive(&archive, &dest).unwrap(), expected);
    for (name, contents) in &files {
        assert_eq!(&fs::read(dest.join(name)).unwrap(), contents, "{name}");
    }
    assert_eq!(listing(dir.path()), vec!["restored", "snap.vrsnap", "src"]);

    // The destination must not exist.
    let error = unpack_archive(&archive, &dest).unwrap_err();
    assert!(matches!(error, StorageError::AlreadyExists(_)), "{error}");
}

#[test]
fn an_archive_of_nothing_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("empty.vrsnap");
    let (sha256, size) = write_archive(&archive, &[]).unwrap();
    assert_eq!(size, 20 + 32);
    assert_eq!(sha256, sha256_file(&archive).unwrap());
    let dest = dir.path().join("out");
    assert!(unpack_archive(&archive, &dest).unwrap().is_empty());
    assert!(listing(&dest).is_empty());
}

#[test]
fn writing_again_replaces_the_archive_whole() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("snap.vrsnap");
    let first = source_files(dir.path(), &[("a", random_bytes(4, 100))]);
    let (first_sha, _) = write_archive(&archive, &first).unwrap();
    let second = vec![("b".to_string(), first[0].1.clone())];
    let (second_sha, _) = write_archive(&archive, &second).unwrap();
    assert_ne!(first_sha, second_sha);
    assert_eq!(verify_archive(&archive).unwrap()[0].path, "b");
}

#[test]
fn every_damaged_byte_and_every_truncation_is_refused_before_unpacking() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("a/one", random_bytes(5, 40)),
        ("empty", Vec::new()),
        ("b/two", random_bytes(6, 70)),
    ];
    let sources = source_files(dir.path(), &files);
    let archive = dir.path().join("snap.vrsnap");
    write_archive(&archive, &sources).unwrap();
    let original = fs::read(&archive).unwrap();
    // Header 20, three entries (14 + path + data each), trailer 32.
    assert_eq!(
        original.len(),
        20 + (14 + 5 + 40) + (14 + 5) + (14 + 5 + 70) + 32
    );

    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    let damaged = work.join("damaged.vrsnap");
    let dest = work.join("dest");
    let check_refused = |bytes: &[u8], what: &str| {
        fs::write(&damaged, bytes).unwrap();
        match unpack_archive(&damaged, &dest) {
            Err(StorageError::Corrupt { path, .. }) => assert_eq!(path, damaged, "{what}"),
            Err(other) => panic!("{what}: expected Corrupt, got {other}"),
            Ok(_) => panic!("{what}: a damaged archive was unpacked"),
        }
        assert!(!dest.exists(), "{what}: the destination exists");
        assert_eq!(listing(&work), vec!["damaged.vrsnap"], "{what}: leftovers");
        assert!(verify_archive(&damaged).is_err(), "{what}");
    };

    // Every byte: magic, version, count, path lengths, paths, data lengths, CRCs, data, trailer.
    for at in 0..original.len() {
        for flip in [0x01u8, 0x80] {
            let mut bytes = original.clone();
            bytes[at] ^= flip;
            check_refused(&bytes, &format!("byte {at} ^ {flip:#x}"));
        }
    }
    for len in 0..original.len() {
        check_refused(&original[..len], &format!("truncated to {len} bytes"));
    }
    let mut longer = original.clone();
    longer.push(0);
    check_refused(&longer, "one byte appended");
    let mut inserted = original.clone();
    inserted.insert(30, 0);
    check_refused(&inserted, "one byte inserted");

    // The undamaged copy still unpacks into the same place.
    fs::write(&damaged, &original).unwrap();
    assert_eq!(unpack_archive(&damaged, &dest).unwrap().len(), 3);
}

#[test]
fn names_that_escape_the_destination_are_refused_when_writing() {
    let dir = tempfile::tempdir().unwrap();
    let sources = source_files(dir.path(), &[("x", b"data".to_vec())]);
    let archive = dir.path().join("snap.vrsnap");
    for bad in [
        "../escape",
        "a/../../escape",
        "/etc/passwd",
        "",
        "a//b",
        "./a",
        "a\\..\\b",
        "a/..",
    ] {
        let files = vec![(bad.to_string(), sources[0].1.clone())];
        let error = write_archive(&archive, &files).unwrap_err();
        assert_eq!(
            error.kind(),
            StorageErrorKind::InvalidInput,
            "{bad:?}: {error}"
        );
        assert!(!archive.exists(), "{bad:?}");
    }
    let duplicate = vec![
        ("same".to_string(), sources[0].1.clone()),
        ("same".to_string(), sources[0].1.clone()),
    ];
    assert!(matches!(
        write_archive(&archive, &duplicate),
        Err(StorageError::InvalidInput(_))
    ));
    assert_eq!(listing(dir.path()), vec!["src"]);
}

/// Builds an archive by hand, with valid checksums, as someone crafting a malicious one would.
fn craft_archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&ARCHIVE_MAGIC);
    bytes.extend_from_slice(&ARCHIVE_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (path, data) in entries {
        bytes.extend_from_slice(&(path.len() as u16).to_le_bytes());
        bytes.extend_from_slice(path.as_bytes());
        bytes.extend_from_slice(&(data.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        bytes.extend_from_slice(data);
    }
    let sha = Sha256::digest(&bytes);
    bytes.extend_from_slice(&sha);
    bytes
}

#[test]
fn crafted_archives_with_escaping_names_are_refused_when_unpacking() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    let archive = dir.path().join("crafted.vrsnap");
    let dest = work.join("dest");

    // The crafting is right: a safe crafted archive unpacks.
    fs::write(&archive, craft_archive(&[("ok/file", b"fine")])).unwrap();
    unpack_archive(&archive, &dest).unwrap();
    assert_eq!(fs::read(dest.join("ok/file")).unwrap(), b"fine");
    fs::remove_dir_all(&dest).unwrap();

    for bad in [
        vec![("../escaped", &b"evil"[..])],
        vec![("ok", &b"fine"[..]), ("a/../../escaped", &b"evil"[..])],
        vec![("/tmp/escaped", &b"evil"[..])],
        vec![("twice", &b"1"[..]), ("twice", &b"2"[..])],
        vec![("dir", &b"1"[..]), ("dir/file", &b"2"[..])],
    ] {
        fs::write(&archive, craft_archive(&bad)).unwrap();
        let error = unpack_archive(&archive, &dest).unwrap_err();
        assert_eq!(
            error.kind(),
            StorageErrorKind::InvalidInput,
            "{bad:?}: {error}"
        );
        assert!(!dest.exists(), "{bad:?}");
        assert!(listing(&work).is_empty(), "{bad:?}: {:?}", listing(&work));
        assert!(!dir.path().join("escaped").exists());
    }
}

#[test]
fn sources_that_are_not_readable_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("snap.vrsnap");
    let missing = vec![("x".to_string(), dir.path().join("nope"))];
    let error = write_archive(&archive, &missing).unwrap_err();
    assert!(matches!(error, StorageError::Io { .. }), "{error}");
    let directory = vec![("x".to_string(), dir.path().to_path_buf())];
    let error = write_archive(&archive, &directory).unwrap_err();
    assert_eq!(error.kind(), StorageErrorKind::InvalidInput, "{error}");
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));

    let error = sha256_file(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(error, StorageError::Io { .. }), "{error}");
}
