//! Save and load: same results for every encoding, full vectors in RAM or on disk; damaged
//! files refused.

use crate::common::{clustered, config, encodings};
use index_core::{IndexError, SearchParams, VectorIndex, VectorIndexWrite};
use index_ivf::{IvfIndex, LoadOptions};
use quant::Metric;

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vr-ivf-{}-{name}", std::process::id()))
}

#[test]
fn round_trip_gives_the_same_results() {
    let dim = 16;
    let data = clustered(3_000, dim, 0.3, 81);
    let queries = clustered(30, dim, 0.3, 82);
    for encoding in encodings(dim) {
        let index = IvfIndex::build(dim, Metric::Cosine, config(16, encoding), &data).unwrap();
        index.delete(7).unwrap();
        let path = temp_path(&format!("{}.ivf", encoding_name(encoding)));
        index.save(&path).unwrap();
        for vectors_on_disk in [false, true] {
            let loaded = IvfIndex::load(&path, LoadOptions { vectors_on_disk }).unwrap();
            assert_eq!(loaded.len(), index.len());
            assert_eq!(loaded.nlist(), 16);
            assert_eq!(loaded.config(), index.config());
            assert!(!loaded.contains(7));
            let params = SearchParams {
                ivf_nprobe: Some(4),
                ..SearchParams::top(10)
            };
            for q in queries.chunks_exact(dim) {
                assert_eq!(
                    index.search(q, &params, None).unwrap(),
                    loaded.search(q, &params, None).unwrap(),
                    "{encoding:?}, on disk {vectors_on_disk}"
                );
            }
            let mem = loaded.memory_usage();
            if vectors_on_disk && encoding.is_lossy() {
                assert!(mem.vector_bytes_on_disk >= 3_000 * dim * 4, "{mem:?}");
            } else {
                assert_eq!(mem.vector_bytes_on_disk, 0);
            }
            // A save reads every full vector through the map (unmapped after the load's
            // checksum): the file it writes loads to the same answers.
            let resaved = temp_path(&format!(
                "{}-{vectors_on_disk}-resaved.ivf",
                encoding_name(encoding)
            ));
            loaded.save(&resaved).unwrap();
            let again = IvfIndex::load(&resaved, LoadOptions { vectors_on_disk }).unwrap();
            for q in queries.chunks_exact(dim) {
                assert_eq!(
                    index.search(q, &params, None).unwrap(),
                    again.search(q, &params, None).unwrap(),
                    "{encoding:?}, saved again, on disk {vectors_on_disk}"
                );
            }
            std::fs::remove_file(&resaved).unwrap();
            // Writes work after a load (a mapped store moves to RAM first).
            loaded.insert(3_000, &data[..dim]).unwrap();
            let hit = loaded.search(&data[..dim], &params, None).unwrap();
            assert!(hit.iter().any(|h| h.offset == 3_000), "{encoding:?}");
        }
        std::fs::remove_file(&path).unwrap();
    }
}

fn encoding_name(e: index_ivf::ListEncoding) -> String {
    format!("{e:?}").replace([' ', '{', '}', ':'], "")
}

#[test]
fn an_untrained_index_round_trips() {
    let index = IvfIndex::new(4, Metric::Manhattan, Default::default()).unwrap();
    let path = temp_path("untrained.ivf");
    index.save(&path).unwrap();
    let loaded = IvfIndex::load(&path, LoadOptions::default()).unwrap();
    assert!(!loaded.is_trained());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn damaged_and_foreign_files_are_refused() {
    let dim = 8;
    let data = clustered(1_000, dim, 0.3, 83);
    let index =
        IvfIndex::build(dim, Metric::Euclidean, config(8, encodings(dim)[3]), &data).unwrap();
    let path = temp_path("damaged.ivf");
    index.save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("flipped byte", {
            let mut b = good.clone();
            let mid = b.len() / 2;
            b[mid] ^= 0x40;
            b
        }),
        ("truncated", good[..good.len() - 9].to_vec()),
        ("bad magic", {
            let mut b = good.clone();
            b[0] = b'X';
            b
        }),
        ("newer version", {
            let mut b = good.clone();
            b[8] = 99;
            b
        }),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in cases {
        std::fs::write(&path, &bytes).unwrap();
        match IvfIndex::load(&path, LoadOptions::default()) {
            Err(IndexError::Corrupt { path: p, .. }) => assert!(p.contains("damaged"), "{what}"),
            other => panic!("{what}: expected a Corrupt error, got {other:?}"),
        }
    }
    std::fs::remove_file(&path).unwrap();
}
