//! Files written by an earlier build still open: `tests/fixtures/v1/` holds a server's data
//! directory written by the router at commit `af63e41` (before the file formats moved onto
//! the shared `persist` toolkit) and killed with SIGKILL: write-ahead logs with records past
//! the last checkpoint, `state.bin` checkpoints, an HNSW graph over full vectors, one over
//! 8-bit codes (with `quant`'s framed quantizer inside), an IVF index with 8-bit lists, and a
//! snapshot archive. Nothing here is rewritten by the test: the copy is opened in a
//! temporary directory.

use index_core::{PointId, SearchParams};
use payload::PayloadSelector;
use std::path::Path;
use storage::{SearchRequest, Storage, VectorSelector};

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The vectors the fixture was written with.
fn vector(i: u64) -> Vec<f32> {
    (0..8u64)
        .map(|k| ((i * 31 + k * 7) % 97) as f32 / 97.0 - 0.5)
        .collect()
}

fn request(q: u64, exact: bool) -> SearchRequest {
    let mut params = SearchParams::top(5);
    params.exact = exact;
    SearchRequest {
        vector_name: String::new(),
        query: storage::Query::Nearest(vector(q)),
        filter: None,
        params,
        with_payload: PayloadSelector::All,
        with_vector: VectorSelector::Nothing,
        candidates: None,
    }
}

#[test]
fn a_data_directory_written_by_the_previous_formats_opens_whole() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture, dir.path());
    let store = Storage::open(&dir.path().join("storage"), &dir.path().join("snapshots")).unwrap();
    let mut names = store.list();
    names.sort();
    assert_eq!(names, ["ivf", "plain", "sq8"]);
    for name in names {
        let c = store.get(&name).unwrap();
        // 300 loaded and indexed, then 10 more, one deleted, one payload set: all replayed.
        assert_eq!(c.count(None), 309, "{name}");
        let ids: Vec<PointId> = [5u64, 7, 12, 305].map(PointId::Num).to_vec();
        let records = c.retrieve(&ids, &PayloadSelector::All, &VectorSelector::All);
        let got: Vec<PointId> = records.iter().map(|r| r.id).collect();
        assert_eq!(got, [7u64, 12, 305].map(PointId::Num), "{name}");
        let payload = |i: usize| serde_json::Value::Object(records[i].payload.clone().unwrap());
        assert_eq!(
            payload(0),
            serde_json::json!({"n": 7, "tag": "b", "extra": true}),
            "{name}"
        );
        assert_eq!(
            payload(1),
            serde_json::json!({"n": 12, "tag": "a"}),
            "{name}"
        );
        assert_eq!(
            payload(2),
            serde_json::json!({"n": 305, "tag": "late"}),
            "{name}"
        );
        let stored = &records[1].vectors.as_ref().unwrap()[0].1;
        let mut want = vector(12);
        if name == "plain" {
            let norm = want.iter().map(|x| x * x).sum::<f32>().sqrt();
            want.iter_mut().for_each(|x| *x /= norm);
        }
        for (s, w) in stored.iter().zip(&want) {
            assert!((s - w).abs() < 1e-6, "{name}: {stored:?} != {want:?}");
        }
        // The index answers as the exact scan does. The fixture's vectors repeat every 97
        // ids, so ties are compared by score: a stored copy of the query scores 1 under
        // cosine and 0 under Euclid; under dot the exact scan decides.
        for q in [3u64, 42, 120, 299] {
            let exact = c.search(&request(q, true)).unwrap();
            let walked = c.search(&request(q, false)).unwrap();
            assert!(
                (exact[0].score - walked[0].score).abs() < 1e-4,
                "{name} query {q}"
            );
            match name.as_str() {
                "plain" => assert!((exact[0].score - 1.0).abs() < 1e-5, "{name} query {q}"),
                "sq8" => assert!(exact[0].score.abs() < 1e-5, "{name} query {q}"),
                _ => {}
            }
            let copies: Vec<u64> = (0..310).filter(|i| i % 97 == q % 97 && *i != 5).collect();
            assert!(
                copies
                    .iter()
                    .any(|&i| exact[0].record.id == PointId::Num(i))
                    || name == "ivf",
                "{name} query {q}: {:?}",
                exact[0].record.id
            );
        }
    }
    let archive = dir
        .path()
        .join("snapshots/plain/plain-1796308895903.snapshot");
    let checksum = std::fs::read_to_string(archive.with_extension("snapshot.sha256")).unwrap();
    store
        .recover("restored", &archive, Some(checksum.trim()))
        .unwrap();
    assert_eq!(store.get("restored").unwrap().count(None), 300);
}
