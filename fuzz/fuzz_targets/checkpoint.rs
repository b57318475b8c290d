//! Shard checkpoints (`state.bin`) as a restart or a restored snapshot meets them: a
//! collection whose checkpoint is the input either opens or is refused with an error; one that
//! opens answers searches, scrolls, counts and retrievals, takes a write and closes, without
//! panicking. A file that opens must also be consistent: every point it lists is found by id.
//!
//! The collection is `fixtures/checkpoint-config.json` (named dense `a`, a multivector `m`, a
//! sparse `s`, a keyword index on `city`). The input's first byte chooses the mode: odd, the
//! header's body length and checksum are recomputed over the rest, so the structure behind
//! the checksum is reached, as in a crafted snapshot.
#![no_main]

use index_core::{PointId, SearchParams};
use libfuzzer_sys::fuzz_target;
use payload::{Filter, Payload, PayloadSelector};
use serde_json::json;
use storage::{PointSelector, PointWrite, Query, SearchRequest, Update, VectorSelector};

const CONFIG: &str = include_str!("../fixtures/checkpoint-config.json");
const PAYLOAD_INDEXES: &str = include_str!("../fixtures/checkpoint-payload-indexes.json");

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut state = rest.to_vec();
    if mode & 1 == 1 && state.len() >= 24 {
        let body_len = (state.len() - 24) as u64;
        state[12..20].copy_from_slice(&body_len.to_le_bytes());
        let crc = persist::crc32(&state[24..]);
        state[20..24].copy_from_slice(&crc.to_le_bytes());
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let collection = dir.path().join("storage/collections/k");
    std::fs::create_dir_all(collection.join("shard-0")).expect("dirs");
    std::fs::write(collection.join("config.json"), CONFIG).expect("config");
    std::fs::write(collection.join("payload_indexes.json"), PAYLOAD_INDEXES).expect("indexes");
    std::fs::write(collection.join("shard-0/state.bin"), &state).expect("state");
    let Ok(store) = storage::Storage::open(&dir.path().join("storage"), &dir.path().join("snap"))
    else {
        return;
    };
    let Ok(c) = store.get("k") else {
        // A collection that does not load is left out, with an error logged; never served.
        return;
    };
    let filter =
        Filter::from_json(&json!({"must": [{"key": "city", "match": {"value": "Paris"}}]}))
            .expect("filter");
    for (exact, filter) in [(false, None), (true, None), (false, Some(filter.clone()))] {
        let mut params = SearchParams::top(5);
        params.exact = exact;
        let found = c.search(&SearchRequest {
            vector_name: "a".into(),
            query: Query::Nearest(vec![0.1, 0.2, 0.3, 0.4]),
            filter: filter.map(std::sync::Arc::new),
            params,
            with_payload: PayloadSelector::All,
            with_vector: VectorSelector::All,
            candidates: None,
        });
        // No point twice in one answer (a point's stale row left live would show here).
        if let Ok(found) = found {
            let mut ids: Vec<PointId> = found.iter().map(|h| h.record.id).collect();
            ids.sort();
            assert!(
                ids.windows(2).all(|w| w[0] != w[1]),
                "a point found twice: {ids:?}"
            );
        }
    }
    let page = c.scroll(
        None,
        1000,
        None,
        &PayloadSelector::All,
        &VectorSelector::All,
    );
    // Every point a scroll lists is found by its id, with the same payload, once.
    let ids: Vec<PointId> = page.points.iter().map(|r| r.id).collect();
    let found = c.retrieve(&ids, &PayloadSelector::All, &VectorSelector::All);
    assert_eq!(found.len(), ids.len(), "scrolled points not found by id");
    for (a, b) in page.points.iter().zip(&found) {
        assert_eq!(a.id, b.id);
        assert_eq!(a.payload, b.payload, "payload of {} differs", a.id);
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "a scroll listed a point twice"
    );
    let _ = c.count(None);
    let _ = c.count(Some(&filter));
    let mut payload = Payload::new();
    payload.insert("city".into(), json!("Paris"));
    let _ = c.update(
        Update::Upsert(vec![PointWrite {
            id: PointId::Num(7),
            vectors: vec![("a".into(), vec![1.0, 0.0, 0.0, 0.0])],
            payload,
            sparse: Vec::new(),
            multi: Vec::new(),
        }]),
        true,
    );
    let _ = c.update(
        Update::Delete(PointSelector::Ids(vec![PointId::Num(1)])),
        true,
    );
    drop(c);
    let _ = store.close();
});
