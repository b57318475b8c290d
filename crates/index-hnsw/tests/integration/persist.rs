//! Save and load: same results, every storage; damaged files refused.

use crate::common::{clustered, queries};
use index_core::{IndexError, SearchParams, VectorIndex, VectorIndexWrite};
use index_hnsw::{HnswConfig, HnswIndex, LoadOptions, StorageKind};
use quant::Metric;

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vr-hnsw-{}-{name}", std::process::id()))
}

#[test]
fn round_trip_gives_the_same_results() {
    let (n, dim) = (5_000, 24);
    let data = clustered(n, dim, 0.3, 10);
    let qs = queries(50, dim, 0.3);
    for storage in [
        StorageKind::F32,
        StorageKind::F16,
        StorageKind::Sq8,
        StorageKind::Binary,
        StorageKind::Pq,
        StorageKind::Rabitq,
    ] {
        let config = HnswConfig {
            storage,
            ..HnswConfig::default()
        };
        let index = HnswIndex::build(dim, Metric::Cosine, config, &data).unwrap();
        index.delete(3).unwrap();
        let path = temp_path(&format!("{storage:?}.hnsw"));
        index.save(&path).unwrap();
        for vectors_on_disk in [false, true] {
            let loaded = HnswIndex::load(&path, LoadOptions { vectors_on_disk }).unwrap();
            assert_eq!(loaded.len(), index.len());
            assert!(!loaded.contains(3));
            for q in qs.chunks_exact(dim) {
                let params = SearchParams::top(10);
                assert_eq!(
                    index.search(q, &params, None).unwrap(),
                    loaded.search(q, &params, None).unwrap(),
                    "{storage:?}"
                );
            }
            // A loaded index takes new points.
            loaded.insert(n as u32, &data[..dim]).unwrap();
            assert_eq!(
                loaded
                    .search(&data[..dim], &SearchParams::top(2), None)
                    .unwrap()
                    .len(),
                2
            );
            if vectors_on_disk && storage.is_quantized() {
                let mem = loaded.memory_usage();
                assert!(mem.vector_bytes_on_disk >= n * dim * 4, "{mem:?}");
            }
        }
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn damaged_files_are_refused() {
    let data = clustered(500, 8, 0.3, 11);
    let index = HnswIndex::build(8, Metric::Euclidean, HnswConfig::default(), &data).unwrap();
    let path = temp_path("damaged.hnsw");
    index.save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    for (what, bytes) in [
        ("flipped byte", {
            let mut b = good.clone();
            let mid = b.len() / 2;
            b[mid] ^= 1;
            b
        }),
        ("truncated", good[..good.len() - 100].to_vec()),
        ("bad magic", {
            let mut b = good.clone();
            b[0] = b'X';
            b
        }),
        ("other version", {
            let mut b = good.clone();
            b[8] = 9;
            b
        }),
        ("empty", Vec::new()),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let err = HnswIndex::load(&path, LoadOptions::default()).unwrap_err();
        assert!(matches!(err, IndexError::Corrupt { .. }), "{what}: {err}");
        assert!(
            err.to_string().contains("damaged.hnsw"),
            "{what}: the error names the file: {err}"
        );
    }
    std::fs::remove_file(&path).unwrap();
}

/// A file with a valid checksum whose upper-link count says billions (found by
/// `fuzz/hnsw_file`, as a crafted snapshot upload could carry): refused as corrupt without
/// first asking for memory by that count (it asked for 50 GB and aborted).
#[test]
fn a_crafted_file_with_a_huge_count_is_refused_without_allocating_by_it() {
    let path = temp_path("huge-upper-count.hnsw");
    std::fs::write(
        &path,
        include_bytes!("../fixtures/huge-upper-count.hnsw").as_slice(),
    )
    .unwrap();
    let e = HnswIndex::load(&path, LoadOptions::default()).unwrap_err();
    assert!(matches!(e, IndexError::Corrupt { .. }), "{e}");
    std::fs::remove_file(&path).unwrap();
}

/// A file with a valid checksum whose entry point claims a level in the billions (found by
/// `fuzz/hnsw_file` with a 10 s timeout): it loaded, and every search then descended through
/// that many empty levels, minutes per query. Refused at load now.
#[test]
fn a_crafted_entry_level_is_refused() {
    let path = temp_path("entry-level-billions.hnsw");
    std::fs::write(
        &path,
        include_bytes!("../fixtures/entry-level-billions.hnsw").as_slice(),
    )
    .unwrap();
    let e = HnswIndex::load(&path, LoadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("entry point at level"), "{e}");
    std::fs::remove_file(&path).unwrap();
}
