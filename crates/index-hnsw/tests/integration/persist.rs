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
            let on_disk = loaded.memory_usage().vector_bytes_on_disk;
            if vectors_on_disk && storage.is_quantized() {
                assert!(on_disk >= n * dim * 4, "{storage:?}: {on_disk}");
            }
            // Vectors unmapped from the process are read back from the file: the same
            // answers, and a save (which reads every vector through the map) loads again
            // to the same index.
            let params = SearchParams::top(10);
            let before: Vec<_> = qs
                .chunks_exact(dim)
                .map(|q| loaded.search(q, &params, None).unwrap())
                .collect();
            assert_eq!(loaded.release_vectors_on_disk(), on_disk, "{storage:?}");
            let resaved = temp_path(&format!("{storage:?}-{vectors_on_disk}-resaved.hnsw"));
            loaded.save(&resaved).unwrap();
            let again = HnswIndex::load(&resaved, LoadOptions { vectors_on_disk }).unwrap();
            for (q, before) in qs.chunks_exact(dim).zip(&before) {
                assert_eq!(
                    &loaded.search(q, &params, None).unwrap(),
                    before,
                    "{storage:?}"
                );
                assert_eq!(
                    &again.search(q, &params, None).unwrap(),
                    before,
                    "{storage:?}"
                );
            }
            std::fs::remove_file(&resaved).unwrap();
        }
        std::fs::remove_file(&path).unwrap();
    }
}

/// Rewrites an `f32` index file this build saved (version 2) in version 1's layout: the same
/// fields, each primary record padded to whole cache lines, as builds before 2026-12-07 wrote
/// them.
fn as_version_1(v2: &[u8]) -> Vec<u8> {
    let u32_at = |o: usize| u32::from_le_bytes(v2[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(v2[o..o + 8].try_into().unwrap()) as usize;
    assert_eq!(u32_at(8), 2, "a version 2 file");
    // Header offsets from the layout table in `persist.rs`.
    let (dim, m, end) = (u32_at(12), u32_at(24), u32_at(60));
    let (primary, secondary) = (u64_at(80), u64_at(88));
    let mut at = 104 + u64_at(96);
    let upper_count = u64_at(at);
    at += 8;
    for _ in 0..upper_count {
        at += 8 + 4 * u32_at(at + 4);
    }
    let records_start = at;
    // State and padding, the vector, then the count and `2·m` ids of level 0.
    let used = 8 + (4 * dim).next_multiple_of(8) + 4 * (1 + 2 * m);
    let padded = used.next_multiple_of(64);
    assert!(
        padded > primary,
        "this dimension's records must change size"
    );
    let mut v1 = v2[..records_start].to_vec();
    v1[8..12].copy_from_slice(&1u32.to_le_bytes());
    v1[80..88].copy_from_slice(&(padded as u64).to_le_bytes());
    for slot in 0..end {
        let record = &v2[records_start + slot * primary..][..primary];
        v1.extend_from_slice(&record[..used]);
        v1.resize(v1.len() + padded - used, 0);
    }
    let secondary_start = records_start + end * primary;
    v1.extend_from_slice(&v2[secondary_start..secondary_start + end * secondary]);
    assert_eq!(secondary_start + end * secondary + 4, v2.len());
    let crc = persist::crc32(&v1);
    v1.extend_from_slice(&crc.to_le_bytes());
    v1
}

/// Files saved before records were packed (version 1, whole cache lines each) still load, give
/// the same answers, and are saved again in this build's layout.
#[test]
fn version_1_files_load() {
    for dim in [50, 100] {
        let data = clustered(3_000, dim, 0.3, 12);
        let qs = queries(30, dim, 0.3);
        let index = HnswIndex::build(dim, Metric::Cosine, HnswConfig::default(), &data).unwrap();
        index.delete(7).unwrap();
        let path = temp_path(&format!("v1-{dim}.hnsw"));
        index.save(&path).unwrap();
        let v2 = std::fs::read(&path).unwrap();
        let v1 = as_version_1(&v2);
        assert!(v1.len() > v2.len(), "{dim}: version 1 pads more");
        std::fs::write(&path, &v1).unwrap();
        let loaded = HnswIndex::load(&path, LoadOptions::default()).unwrap();
        assert_eq!(loaded.len(), index.len());
        assert!(!loaded.contains(7));
        for q in qs.chunks_exact(dim) {
            let params = SearchParams::top(10);
            assert_eq!(
                index.search(q, &params, None).unwrap(),
                loaded.search(q, &params, None).unwrap(),
                "{dim}"
            );
        }
        loaded.save(&path).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            v2,
            "{dim}: saved as version 2"
        );
        // A version 1 header with a record size version 1 never wrote is refused.
        let mut odd = v1.clone();
        let padded = u64::from_le_bytes(odd[80..88].try_into().unwrap());
        odd[80..88].copy_from_slice(&(padded - 8).to_le_bytes());
        let body = odd.len() - 4;
        let crc = persist::crc32(&odd[..body]);
        odd[body..].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &odd).unwrap();
        let e = HnswIndex::load(&path, LoadOptions::default()).unwrap_err();
        assert!(e.to_string().contains("record sizes"), "{e}");
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
