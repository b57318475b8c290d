//! Save and load: the same answers after a round trip; damage refused with the file named.

use crate::common::*;
use gpu_cagra::{BuildAlgo, CagraConfig, CagraIndex, CagraSearchParams, CagraStorage};
use index_core::{IndexError, VectorIndex};
use quant::Metric;

#[test]
fn a_saved_index_loads_with_the_same_graph_deletes_and_answers() {
    let (data, queries) = dataset();
    let dir = tempfile::tempdir().unwrap();
    for storage in [CagraStorage::F32, CagraStorage::Sq8] {
        let config = CagraConfig {
            storage,
            ..config(BuildAlgo::NnDescent)
        };
        let index = CagraIndex::build(32, Metric::InnerProduct, config, &data).unwrap();
        index.delete(17).unwrap();
        index.delete(19_999).unwrap();
        let path = dir.path().join(format!("{storage:?}.cagra"));
        index.save(&path).unwrap();
        let loaded = CagraIndex::load(&path).unwrap();
        assert_eq!(loaded.graph(), index.graph());
        assert_eq!(loaded.vectors(), index.vectors());
        assert_eq!(loaded.config(), index.config());
        assert_eq!(loaded.center(), index.center());
        assert_eq!(loaded.deleted(), index.deleted());
        assert_eq!(loaded.len(), 19_998);
        let params = CagraSearchParams::default();
        assert_eq!(
            search_all(&loaded, &queries, 10, &params, None),
            search_all(&index, &queries, 10, &params, None)
        );
    }
}

#[test]
fn damaged_truncated_and_foreign_files_are_refused_naming_the_file() {
    let data = clustered(2_000, 8, 10, 0.3, 3);
    let index = CagraIndex::build(8, Metric::Euclidean, config(BuildAlgo::Auto), &data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.cagra");
    index.save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    let cases: [(&str, Vec<u8>); 4] = [
        ("flipped", flipped),
        ("truncated", good[..good.len() - 9].to_vec()),
        ("foreign", b"VRHNSW\0\0 not a graph of ours".to_vec()),
        ("empty", Vec::new()),
    ];
    for (name, bytes) in cases {
        let bad = dir.path().join(name);
        std::fs::write(&bad, bytes).unwrap();
        match CagraIndex::load(&bad) {
            Err(IndexError::Corrupt { path, .. }) => assert!(path.ends_with(name), "{path}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(matches!(
        CagraIndex::load(dir.path().join("absent")),
        Err(IndexError::Io(_))
    ));
}
