//! A local shard: its points, payloads, payload indexes and segments, searched together.
//!
//! # Concurrency
//! One `RwLock` guards the shard's state: the point map (id → segment, row, payload), the
//! segment list and the payload indexes. Writes (applied in log order by the collection)
//! take it for writing, briefly; searches, retrievals, scrolls and checkpoints take it for
//! reading. The optimizer does its slow part (graph inserts, file writes) without it, then
//! moves points with one short write-locked swap, so a point is live in exactly one segment
//! at every instant a reader can observe.
//!
//! # Checkpoint file (`state.bin`), version 1
//! ```text
//! [magic "VRSHARD\0"][version u32 LE = 1][body_len u64 LE][crc32 of body u32 LE][body]
//! body   = [header_len u32 LE][header: JSON][points: points_bytes][f32 LE values]
//! header = {"applied_seq", "next_segment_id", "point_count", "points_bytes",
//!           "indexed": [{"id", "generation", "rows"}]}     graphs on disk and the rows they hold
//! point  = [id: 0 u8, u64 | 1 u8, u128 (UUID)]
//!          [location: 0 u8, segment u64, row u32            a row of an on-disk graph
//!                   | 1 u8, n u8, n × (column u16, len u32)] vectors inline, in the f32 block]
//!          [payload_len u32][payload: JSON]
//! ```
//! Indexed segments' graphs live beside it as `seg-<id>-<generation>-<column>.hnsw` (the
//! index crate's own versioned, checksummed format). A growing graph is rewritten only when
//! the rows added since its last file reach half of what that file holds (and on close):
//! rows past the file are checkpointed inline meanwhile, so the bytes written stay linear in
//! the collection size. A graph file is deleted only once no checkpoint refers to it. The
//! state file is replaced atomically (temporary file, fsync, rename, directory fsync).

use crate::config::EffectiveVector;
use crate::filter_cache::{FilterCache, FilterRows};
use crate::ops::{Operation, PointWrite};
use crate::segment::SegmentIndex;
use crate::segment::{Rows, Segment, SegmentVectors};
use crate::{Result, StorageError};
use index_core::{merge_top_k, prepared_vector, PointId, SearchParams};
use index_hnsw::{HnswConfig, HnswIndex, StorageKind};
use index_ivf::IvfIndex;
use parking_lot::{Mutex, RwLock};
use payload::{Filter, KeyPath, Payload, PayloadIndexes, PayloadSelector, PointView};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const STATE_MAGIC: &[u8; 8] = b"VRSHARD\0";
const STATE_VERSION: u32 = 1;
const STATE_FILE: &str = "state.bin";

/// Which stored vectors to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VectorSelector {
    /// None.
    Nothing,
    /// All of them.
    All,
    /// Only these names.
    Only(Vec<String>),
}

impl VectorSelector {
    fn wants(&self, name: &str) -> bool {
        match self {
            VectorSelector::Nothing => false,
            VectorSelector::All => true,
            VectorSelector::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

/// A point as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its id.
    pub id: PointId,
    /// Its payload, as selected (`None` when not asked for).
    pub payload: Option<Payload>,
    /// Its vectors by name, as selected (`None` when not asked for).
    pub vectors: Option<Vec<(String, Vec<f32>)>>,
}

/// A search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPoint {
    /// The point.
    pub record: Record,
    /// Internal distance (smaller is closer).
    pub distance: f32,
    /// Qdrant's score for the metric.
    pub score: f32,
}

/// A nearest-neighbour search over one named vector.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// Which vector (`""` for the unnamed one).
    pub vector_name: String,
    /// The query, as the user sent it.
    pub vector: Vec<f32>,
    /// Payload filter.
    pub filter: Option<Arc<Filter>>,
    /// Limit (offset included), ef, exactness, score bound.
    pub params: SearchParams,
    /// Payload to return.
    pub with_payload: PayloadSelector,
    /// Vectors to return.
    pub with_vector: VectorSelector,
}

/// One page of a scroll.
#[derive(Debug, Clone)]
pub struct ScrollPage {
    /// Points in id order.
    pub points: Vec<Record>,
    /// The first id not returned, if any.
    pub next: Option<PointId>,
}

pub(crate) struct PointEntry {
    seg: Arc<Segment>,
    row: u32,
    payload: Payload,
}

struct State {
    points: BTreeMap<PointId, PointEntry>,
    /// Indexed segments, sealed appendables waiting for the optimizer, then `active`.
    segments: Vec<Arc<Segment>>,
    active: Arc<Segment>,
    indexes: PayloadIndexes,
    /// Filters materialised as row bitsets, kept current by every write (`filter_cache`).
    /// Behind its own lock so that searches, which hold the state's read lock, can fill it.
    filters: Mutex<FilterCache>,
    applied_seq: u64,
    checkpointed_seq: u64,
    next_segment_id: u64,
}

/// How the shard sees its collection's settings.
#[derive(Debug, Clone)]
pub struct ShardSettings {
    /// Every named vector, in config order.
    pub vectors: Vec<EffectiveVector>,
    /// Rows after which an appendable segment is sealed; `None`: never index.
    pub indexing_threshold: Option<usize>,
    /// Rows an indexed segment grows to before a new one starts.
    pub max_segment_points: usize,
    /// (fraction, minimum) of deleted rows that triggers a rebuild.
    pub vacuum: (f64, usize),
}

/// A local shard.
pub struct LocalShard {
    id: u32,
    dir: PathBuf,
    settings: ShardSettings,
    columns: HashMap<String, usize>,
    state: RwLock<State>,
    /// One optimizer step at a time.
    optimizing: Mutex<()>,
    /// Serialises checkpoints with the optimizer's file writes.
    files: Mutex<()>,
}

struct View<'a> {
    id: PointId,
    entry: &'a PointEntry,
    columns: &'a HashMap<String, usize>,
}

impl PointView for View<'_> {
    fn id(&self) -> PointId {
        self.id
    }
    fn payload(&self) -> Option<&Payload> {
        Some(&self.entry.payload)
    }
    fn has_vector(&self, name: &str) -> bool {
        self.columns
            .get(name)
            .is_some_and(|&c| self.entry.seg.has_vector(c, self.entry.row))
    }
}

impl LocalShard {
    /// Opens the shard in `dir`, loading its last checkpoint if there is one.
    pub fn open(
        id: u32,
        dir: &Path,
        settings: ShardSettings,
        index_defs: &[(String, Value)],
    ) -> Result<LocalShard> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let columns = settings
            .vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name.clone(), i))
            .collect();
        let active = Arc::new(Segment::appendable(0, &settings.vectors));
        let shard = LocalShard {
            id,
            dir: dir.to_path_buf(),
            columns,
            state: RwLock::new(State {
                points: BTreeMap::new(),
                segments: vec![active.clone()],
                active,
                indexes: PayloadIndexes::new(),
                filters: Mutex::new(FilterCache::default()),
                applied_seq: 0,
                checkpointed_seq: 0,
                next_segment_id: 1,
            }),
            settings,
            optimizing: Mutex::new(()),
            files: Mutex::new(()),
        };
        let path = dir.join(STATE_FILE);
        if path.exists() {
            shard.load(&path)?;
        }
        {
            let mut st = shard.state.write();
            for (field, schema) in index_defs {
                let schema = payload::FieldSchema::from_json(schema)?;
                let State {
                    indexes, points, ..
                } = &mut *st;
                indexes.create(
                    field,
                    schema,
                    points.iter().map(|(id, e)| (*id, &e.payload)),
                )?;
            }
        }
        Ok(shard)
    }

    /// The shard's number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The last operation applied.
    pub fn applied_seq(&self) -> u64 {
        self.state.read().applied_seq
    }

    /// The last operation persisted by a checkpoint.
    pub fn checkpointed_seq(&self) -> u64 {
        self.state.read().checkpointed_seq
    }

    /// Live points.
    pub fn len(&self) -> usize {
        self.state.read().points.len()
    }

    /// Whether the shard holds no points.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.state.read().segments.len()
    }

    /// Points whose current version sits in an indexed segment.
    pub fn indexed_points(&self) -> usize {
        self.state
            .read()
            .segments
            .iter()
            .filter(|s| s.is_indexed())
            .map(|s| s.live_count())
            .sum()
    }

    /// Whether the optimizer has work waiting (sealed segments or a due vacuum).
    pub fn needs_optimization(&self) -> bool {
        let st = self.state.read();
        st.segments
            .iter()
            .any(|s| !s.is_indexed() && !Arc::ptr_eq(s, &st.active))
            || self.vacuum_candidate(&st).is_some()
    }

    fn column(&self, name: &str) -> Result<usize> {
        self.columns
            .get(name)
            .copied()
            .ok_or_else(|| StorageError::UnknownVector {
                name: name.to_string(),
            })
    }

    /// Applies a logged operation (`None`: the operation concerns other shards; only the
    /// sequence number advances, so the log can be truncated past it). Operations at or below
    /// the applied sequence number are skipped, so replaying the log is idempotent. Returns
    /// whether a segment was sealed.
    pub fn apply(&self, seq: u64, op: Option<&Operation>) -> bool {
        let mut st = self.state.write();
        if seq <= st.applied_seq {
            return false;
        }
        let State {
            points,
            active,
            indexes,
            filters,
            ..
        } = &mut *st;
        let Some(op) = op else {
            st.applied_seq = seq;
            return false;
        };
        let filters = filters.get_mut();
        match op {
            Operation::Upsert(writes) => {
                for w in writes {
                    // The row a re-upsert replaces dies: its bits go (materialised filters hold
                    // live rows only, so a search needs no liveness test on top of them).
                    if let Some(old) = points.get(&w.id) {
                        filters.point_written(old.seg.id, old.row, |_| false);
                    }
                    self.upsert_one(points, active, indexes, w);
                    self.refresh_filters(filters, points, w.id);
                }
            }
            Operation::Delete(ids) => {
                for id in ids {
                    if let Some(e) = points.remove(id) {
                        e.seg.set_live(e.row, false);
                        filters.point_written(e.seg.id, e.row, |_| false);
                        indexes.update(*id, Some(&e.payload), None);
                    }
                }
            }
            Operation::SetPayload { ids, payload, key } => {
                let key = key.as_deref().and_then(|k| KeyPath::parse(k).ok());
                self.edit_payloads(points, indexes, ids, |p| {
                    let _ = payload::set_payload(p, payload, key.as_ref());
                });
                ids.iter()
                    .for_each(|id| self.refresh_filters(filters, points, *id));
            }
            Operation::OverwritePayload { ids, payload } => {
                self.edit_payloads(points, indexes, ids, |p| *p = payload.clone());
                ids.iter()
                    .for_each(|id| self.refresh_filters(filters, points, *id));
            }
            Operation::DeletePayload { ids, keys } => {
                let keys: Vec<KeyPath> =
                    keys.iter().filter_map(|k| KeyPath::parse(k).ok()).collect();
                self.edit_payloads(points, indexes, ids, |p| payload::delete_keys(p, &keys));
                ids.iter()
                    .for_each(|id| self.refresh_filters(filters, points, *id));
            }
            Operation::ClearPayload(ids) => {
                self.edit_payloads(points, indexes, ids, |p| p.clear());
                ids.iter()
                    .for_each(|id| self.refresh_filters(filters, points, *id));
            }
        }
        st.applied_seq = seq;
        self.seal_if_full(&mut st)
    }

    fn upsert_one(
        &self,
        points: &mut BTreeMap<PointId, PointEntry>,
        active: &Arc<Segment>,
        indexes: &mut PayloadIndexes,
        w: &PointWrite,
    ) {
        let cols: Vec<(usize, &[f32])> = w
            .vectors
            .iter()
            .filter_map(|(name, v)| self.columns.get(name).map(|&c| (c, v.as_slice())))
            .collect();
        let row = active.push_row(w.id, &cols);
        let entry = PointEntry {
            seg: active.clone(),
            row,
            payload: w.payload.clone(),
        };
        if let Some(old) = points.insert(w.id, entry) {
            old.seg.set_live(old.row, false);
            indexes.update(w.id, Some(&old.payload), Some(&w.payload));
        } else {
            indexes.update(w.id, None, Some(&w.payload));
        }
    }

    /// Re-evaluates the materialised filters on point `id` after a write to it.
    fn refresh_filters(
        &self,
        filters: &mut FilterCache,
        points: &BTreeMap<PointId, PointEntry>,
        id: PointId,
    ) {
        let Some(e) = points.get(&id) else {
            return;
        };
        let view = View {
            id,
            entry: e,
            columns: &self.columns,
        };
        filters.point_written(e.seg.id, e.row, |f| f.matches(&view));
    }

    fn edit_payloads(
        &self,
        points: &mut BTreeMap<PointId, PointEntry>,
        indexes: &mut PayloadIndexes,
        ids: &[PointId],
        edit: impl Fn(&mut Payload),
    ) {
        for id in ids {
            if let Some(e) = points.get_mut(id) {
                let old = e.payload.clone();
                edit(&mut e.payload);
                indexes.update(*id, Some(&old), Some(&e.payload));
            }
        }
    }

    fn seal_if_full(&self, st: &mut State) -> bool {
        let Some(threshold) = self.settings.indexing_threshold else {
            return false;
        };
        if st.active.row_count() < threshold {
            return false;
        }
        self.start_appendable(st);
        true
    }

    /// Seals the active appendable segment (the optimizer picks it up) and starts a new one.
    fn start_appendable(&self, st: &mut State) {
        let seg = Arc::new(Segment::appendable(
            st.next_segment_id,
            &self.settings.vectors,
        ));
        st.next_segment_id += 1;
        st.segments.push(seg.clone());
        st.active = seg;
    }

    /// Seals the appendable segment early when the shard already has an indexed segment and
    /// the appendable one holds at least `min_rows` rows: called when writes have paused, so
    /// that the tail of a bulk load below the indexing threshold is indexed instead of
    /// scanned exactly by every search. A shard with no indexed segment stays exact (small
    /// collections give exactly the brute-force answer, as in Qdrant). Returns whether it
    /// sealed.
    pub fn seal_idle_tail(&self, min_rows: usize) -> bool {
        if self.settings.indexing_threshold.is_none() {
            return false;
        }
        let mut st = self.state.write();
        let has_index = st.segments.iter().any(|s| s.is_indexed());
        let rows = st.active.row_count();
        if !has_index || rows < min_rows.max(1) {
            return false;
        }
        self.start_appendable(&mut st);
        true
    }

    /// Creates a payload index over the shard's current points.
    pub fn create_payload_index(&self, field: &str, schema: &Value) -> Result<()> {
        let schema = payload::FieldSchema::from_json(schema)?;
        let mut st = self.state.write();
        let State {
            indexes, points, ..
        } = &mut *st;
        indexes.create(
            field,
            schema,
            points.iter().map(|(id, e)| (*id, &e.payload)),
        )?;
        Ok(())
    }

    /// Drops a payload index.
    pub fn delete_payload_index(&self, field: &str) -> bool {
        self.state.write().indexes.drop_field(field)
    }

    /// Qdrant's `payload_schema` for this shard.
    pub fn payload_schema(&self) -> Value {
        self.state.read().indexes.schema()
    }

    /// The ids of the points matching `filter` (all points when `None`).
    pub fn matching_ids(&self, filter: Option<&Filter>) -> Vec<PointId> {
        let st = self.state.read();
        self.matching(&st, filter).collect()
    }

    fn matching<'a>(
        &'a self,
        st: &'a State,
        filter: Option<&'a Filter>,
    ) -> Box<dyn Iterator<Item = PointId> + 'a> {
        match filter {
            None => Box::new(st.points.keys().copied()),
            Some(f) => {
                if let Some(cands) = f.indexed_candidates(&st.indexes) {
                    let mut ids: Vec<PointId> = cands.into_iter().collect();
                    ids.sort();
                    Box::new(ids.into_iter().filter(move |id| {
                        st.points.get(id).is_some_and(|e| {
                            f.matches(&View {
                                id: *id,
                                entry: e,
                                columns: &self.columns,
                            })
                        })
                    }))
                } else {
                    Box::new(
                        st.points
                            .iter()
                            .filter(move |(id, e)| {
                                f.matches(&View {
                                    id: **id,
                                    entry: e,
                                    columns: &self.columns,
                                })
                            })
                            .map(|(id, _)| *id),
                    )
                }
            }
        }
    }

    /// Number of points matching `filter`.
    pub fn count(&self, filter: Option<&Filter>) -> usize {
        let st = self.state.read();
        match filter {
            None => st.points.len(),
            Some(_) => self.matching(&st, filter).count(),
        }
    }

    /// Which of `ids` exist.
    pub fn existing(&self, ids: &[PointId]) -> Vec<PointId> {
        let st = self.state.read();
        ids.iter()
            .copied()
            .filter(|id| st.points.contains_key(id))
            .collect()
    }

    fn record(
        &self,
        id: PointId,
        e: &PointEntry,
        with_payload: &PayloadSelector,
        with_vector: &VectorSelector,
    ) -> Record {
        let vectors = (*with_vector != VectorSelector::Nothing).then(|| {
            self.settings
                .vectors
                .iter()
                .enumerate()
                .filter(|(_, v)| with_vector.wants(&v.name))
                .filter_map(|(c, v)| e.seg.vector(c, e.row).map(|x| (v.name.clone(), x)))
                .collect()
        });
        Record {
            id,
            payload: with_payload.apply(&e.payload),
            vectors,
        }
    }

    /// The points with these ids that exist, in the order asked.
    pub fn retrieve(
        &self,
        ids: &[PointId],
        with_payload: &PayloadSelector,
        with_vector: &VectorSelector,
    ) -> Vec<Record> {
        let st = self.state.read();
        ids.iter()
            .filter_map(|id| {
                st.points
                    .get(id)
                    .map(|e| self.record(*id, e, with_payload, with_vector))
            })
            .collect()
    }

    /// The stored vector `name` of point `id`, if any.
    pub fn vector_of(&self, id: PointId, name: &str) -> Result<Option<Vec<f32>>> {
        let col = self.column(name)?;
        let st = self.state.read();
        Ok(st.points.get(&id).and_then(|e| e.seg.vector(col, e.row)))
    }

    /// Up to `limit` points from `from` on (inclusive), in id order, that match `filter`.
    pub fn scroll(
        &self,
        from: Option<PointId>,
        limit: usize,
        filter: Option<&Filter>,
        with_payload: &PayloadSelector,
        with_vector: &VectorSelector,
    ) -> ScrollPage {
        let st = self.state.read();
        let start = from.map_or(Bound::Unbounded, Bound::Included);
        let mut it = st
            .points
            .range((start, Bound::Unbounded))
            .filter(|(id, e)| {
                filter.is_none_or(|f| {
                    f.matches(&View {
                        id: **id,
                        entry: e,
                        columns: &self.columns,
                    })
                })
            });
        let points: Vec<Record> = it
            .by_ref()
            .take(limit)
            .map(|(id, e)| self.record(*id, e, with_payload, with_vector))
            .collect();
        let next = it.next().map(|(id, _)| *id);
        ScrollPage { points, next }
    }

    /// Whether a search is quick and bounded enough to run on an async reactor thread: a
    /// graph walk with a moderate `ef` and limit, unfiltered or with a filter already
    /// materialised (which the index then plans like an unfiltered walk, or scans a few rows
    /// of), over a shard with no unindexed rows: a scan of plain rows costs in proportion
    /// to the rows and their dimension, unbounded, so it never runs on the reactor. Anything
    /// else, a filter still to be evaluated over the payloads among it, belongs on a worker
    /// pool.
    pub fn is_quick(&self, req: &SearchRequest) -> bool {
        if req.params.exact || req.params.limit > 1_000 || req.params.hnsw_ef.unwrap_or(0) > 1_000 {
            return false;
        }
        let st = self.state.read();
        if let Some(filter) = &req.filter {
            if st.filters.lock().get(filter).is_none() {
                return false;
            }
        }
        st.segments
            .iter()
            .all(|s| s.is_indexed() || s.row_count() == 0)
    }

    /// The closest points to the query, closest first, at most `params.limit`.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<ScoredPoint>> {
        req.params.validate()?;
        let col = self.column(&req.vector_name)?;
        let v = &self.settings.vectors[col];
        let metric = v.distance.metric();
        let query = prepared_vector(&req.vector, v.dim, metric)?;
        let st = self.state.read();
        // The filter as row bitsets when it is (or should now be) materialised; otherwise it
        // is tested point by point as the walk meets them.
        let passing = req
            .filter
            .as_ref()
            .and_then(|f| self.materialised_filter(&st, f));
        let filter = req.filter.as_deref().filter(|_| passing.is_none());
        let predicate = filter.map(|f| {
            let st = &st;
            move |id: PointId| {
                st.points.get(&id).is_some_and(|e| {
                    f.matches(&View {
                        id,
                        entry: e,
                        columns: &self.columns,
                    })
                })
            }
        });
        let mut lists = Vec::with_capacity(st.segments.len());
        for seg in &st.segments {
            let allowed = match &passing {
                Some(rows) => match rows.segment(seg.id) {
                    Some(allowed) => Some(allowed),
                    None => continue,
                },
                None => None,
            };
            lists.push(seg.search(col, &query, &req.params, predicate.as_ref(), allowed)?);
        }
        let merged = merge_top_k(&lists, req.params.limit, |h| h.1, |h| h.0);
        Ok(merged
            .into_iter()
            .filter_map(|(id, distance)| {
                st.points.get(&id).map(|e| ScoredPoint {
                    record: self.record(id, e, &req.with_payload, &req.with_vector),
                    distance,
                    score: metric.score(distance),
                })
            })
            .collect())
    }

    /// The rows `filter` lets through, per segment, from the cache; or computed now when a
    /// payload index narrows the filter, a sample says that fewer than half of the points
    /// pass, or the filter was seen before (`filter_cache` explains why). `None`: test the
    /// filter point by point.
    fn materialised_filter(&self, st: &State, filter: &Arc<Filter>) -> Option<Arc<FilterRows>> {
        /// Below this share of points passing, a filter is materialised the first time.
        const NARROW_BELOW: f64 = 0.5;
        if let Some(rows) = st.filters.lock().get(filter) {
            return Some(rows);
        }
        let candidates = filter.indexed_candidates(&st.indexes);
        let narrow = candidates.is_some() || self.sampled_share(st, filter) < NARROW_BELOW;
        if !st.filters.lock().should_materialise(filter, narrow) {
            return None;
        }
        // Computed without the cache's lock: searches with other filters go on meanwhile.
        // The state's read lock keeps writers out, so the result is current when cached.
        let mut rows = FilterRows::default();
        let mut test = |id: PointId, e: &PointEntry| {
            let view = View {
                id,
                entry: e,
                columns: &self.columns,
            };
            if filter.matches(&view) {
                rows.set(e.seg.id, e.row, true);
            }
        };
        match candidates {
            Some(ids) => ids.into_iter().for_each(|id| {
                if let Some(e) = st.points.get(&id) {
                    test(id, e);
                }
            }),
            None => st.points.iter().for_each(|(id, e)| test(*id, e)),
        }
        let rows = Arc::new(rows);
        st.filters.lock().insert(filter.clone(), rows.clone());
        Some(rows)
    }

    /// The share of the shard's points that pass `filter`, from a fixed pseudo-random sample
    /// of rows (Qdrant's planner samples the same way when no payload index can count a
    /// condition).
    fn sampled_share(&self, st: &State, filter: &Filter) -> f64 {
        const SAMPLE: u64 = 128;
        let sizes: Vec<usize> = st.segments.iter().map(|s| s.row_count()).collect();
        let total: usize = sizes.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let (mut tried, mut passed) = (0usize, 0usize);
        for i in 0..SAMPLE {
            let mut at = ((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % total;
            let Some(k) = sizes.iter().position(|&n| {
                let here = at < n;
                if !here {
                    at -= n;
                }
                here
            }) else {
                continue;
            };
            let seg = &st.segments[k];
            let id = {
                let rows = seg.rows.read();
                if !rows.live.get(at as u32) {
                    continue;
                }
                rows.ids[at]
            };
            if let Some(e) = st.points.get(&id) {
                tried += 1;
                passed += filter.matches(&View {
                    id,
                    entry: e,
                    columns: &self.columns,
                }) as usize;
            }
        }
        if tried == 0 {
            return 0.0;
        }
        passed as f64 / tried as f64
    }

    fn vacuum_candidate(&self, st: &State) -> Option<Arc<Segment>> {
        let (fraction, min) = self.settings.vacuum;
        st.segments
            .iter()
            .filter(|s| s.is_indexed())
            .find(|s| {
                let rows = s.row_count();
                let dead = rows - s.live_count();
                dead >= min.max(1) && dead as f64 > fraction * rows as f64
            })
            .cloned()
    }

    /// Runs one optimizer step on `pool`: indexes the oldest sealed segment, or rebuilds an
    /// indexed segment with too many deleted rows. Returns whether there was work.
    pub fn optimize(&self, pool: &rayon::ThreadPool) -> Result<bool> {
        let _one = self.optimizing.lock();
        let (src, target, fresh_id) = {
            let mut st = self.state.write();
            let sealed = st
                .segments
                .iter()
                .find(|s| !s.is_indexed() && !Arc::ptr_eq(s, &st.active))
                .cloned();
            match sealed {
                Some(src) => {
                    let target = st
                        .segments
                        .iter()
                        .filter(|s| s.is_indexed())
                        .rfind(|s| s.row_count() < self.settings.max_segment_points)
                        .cloned();
                    let fresh = target.is_none().then(|| {
                        st.next_segment_id += 1;
                        st.next_segment_id - 1
                    });
                    (src, target, fresh)
                }
                None => match self.vacuum_candidate(&st) {
                    Some(src) => {
                        st.next_segment_id += 1;
                        (src, None, Some(st.next_segment_id - 1))
                    }
                    None => return Ok(false),
                },
            }
        };
        // Copy out the live rows and their vectors; the source takes no new rows, and rows
        // that die meanwhile are skipped at the swap.
        let (moving, vectors): (Vec<(u32, PointId)>, Vec<ColumnCopy>) = {
            let rows = src.rows.read();
            let moving: Vec<(u32, PointId)> = (0..rows.ids.len() as u32)
                .filter(|&r| rows.live.get(r))
                .map(|r| (r, rows.ids[r as usize]))
                .collect();
            drop(rows);
            let vectors = (0..self.settings.vectors.len())
                .map(|c| moving.iter().map(|&(r, _)| src.vector(c, r)).collect())
                .collect();
            (moving, vectors)
        };
        let target = match (target, fresh_id) {
            (Some(t), _) => t,
            (None, Some(id)) => Arc::new(Segment::indexed(
                id,
                self.new_graphs(&vectors)?,
                0,
                Rows::default(),
            )),
            (None, None) => unreachable!("either a target or a fresh id"),
        };
        let SegmentVectors::Indexed { graphs, .. } = &target.vectors else {
            unreachable!("targets are indexed");
        };
        let base = {
            let mut rows = target.rows.write();
            let base = rows.ids.len() as u32;
            rows.ids.extend(moving.iter().map(|&(_, id)| id));
            base
        };
        pool.install(|| -> Result<()> {
            for (c, graph) in graphs.iter().enumerate() {
                graph.insert_batch(base, &vectors[c])?;
                graph.finish_batch();
            }
            Ok(())
        })?;
        {
            let mut st = self.state.write();
            let mut moved = Vec::with_capacity(moving.len());
            for (i, &(row, id)) in moving.iter().enumerate() {
                let Some(e) = st.points.get_mut(&id) else {
                    continue;
                };
                if Arc::ptr_eq(&e.seg, &src) && e.row == row {
                    e.seg = target.clone();
                    e.row = base + i as u32;
                    target.set_live(base + i as u32, true);
                    src.set_live(row, false);
                    moved.push((row, base + i as u32));
                }
            }
            st.filters
                .get_mut()
                .rows_moved(src.id, target.id, &moved, true);
            let moved = moved.len();
            st.segments.retain(|s| !Arc::ptr_eq(s, &src));
            if !st.segments.iter().any(|s| Arc::ptr_eq(s, &target)) {
                // Indexed segments go first: sealed and active appendables stay at the end.
                let at = st
                    .segments
                    .iter()
                    .position(|s| !s.is_indexed())
                    .unwrap_or(st.segments.len());
                st.segments.insert(at, target.clone());
            }
            tracing::debug!(
                shard = self.id,
                moved,
                segment = target.id,
                "optimizer moved points"
            );
        }
        // Rewrite the graph files only once the rows added since the last write reach half of
        // what it holds: the checkpoint carries the others inline until then.
        let unsaved = target.row_count() - target.saved_rows();
        if unsaved * 2 >= target.saved_rows().max(1) {
            self.save_graphs(&target)?;
        }
        // The move changed the state without a new operation: checkpoint regardless.
        self.write_checkpoint(true)?;
        Ok(true)
    }

    /// Holds the optimizer between steps while the guard lives: a snapshot needs the files of
    /// a checkpoint to stay put until it has linked them aside.
    pub fn pause_optimizer(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.optimizing.lock()
    }

    /// Writes a segment's graphs as a new generation of files.
    fn save_graphs(&self, segment: &Segment) -> Result<()> {
        let SegmentVectors::Indexed { graphs, .. } = &segment.vectors else {
            return Ok(());
        };
        let _files = self.files.lock();
        let rows = segment.row_count();
        let generation = segment.generation() + 1;
        for (c, graph) in graphs.iter().enumerate() {
            graph.save(&self.graph_path(segment.id, generation, c))?;
        }
        segment.set_saved_rows(rows);
        segment.set_generation(generation);
        Ok(())
    }

    /// Writes every graph with rows not yet in its files, then a checkpoint: what a clean
    /// shutdown does, so the next start loads graphs instead of re-indexing inline rows.
    pub fn save_all(&self) -> Result<()> {
        let _one = self.optimizing.lock();
        let segments: Vec<Arc<Segment>> = self.state.read().segments.clone();
        for s in segments
            .iter()
            .filter(|s| s.is_indexed() && s.row_count() > s.saved_rows())
        {
            self.save_graphs(s)?;
        }
        self.write_checkpoint(true).map(|_| ())
    }

    fn new_graphs(&self, vectors: &[ColumnCopy]) -> Result<Vec<SegmentIndex>> {
        self.settings
            .vectors
            .iter()
            .zip(vectors)
            .map(|(v, column)| {
                let metric = v.distance.metric();
                let sample = || -> Vec<f32> {
                    column
                        .iter()
                        .flatten()
                        .take(100_000)
                        .flatten()
                        .copied()
                        .collect()
                };
                if let Some(ivf) = &v.ivf {
                    let mut index = IvfIndex::new(v.dim, metric, ivf.clone())?;
                    index.train(&sample())?;
                    return Ok(SegmentIndex::Ivf(index));
                }
                let config = HnswConfig {
                    seed: 0x5eed ^ self.id as u64,
                    ..v.hnsw.clone()
                };
                if config.storage.is_quantized() {
                    let sample = sample();
                    if !sample.is_empty() {
                        return Ok(SegmentIndex::Hnsw(HnswIndex::with_training(
                            v.dim, metric, config, &sample,
                        )?));
                    }
                    // Nothing to train on yet: full precision until a rebuild.
                    return Ok(SegmentIndex::Hnsw(HnswIndex::new(
                        v.dim,
                        metric,
                        HnswConfig {
                            storage: StorageKind::F32,
                            ..config
                        },
                    )?));
                }
                Ok(SegmentIndex::Hnsw(HnswIndex::new(v.dim, metric, config)?))
            })
            .collect()
    }

    fn extension(&self, column: usize) -> &'static str {
        SegmentIndex::extension(self.settings.vectors[column].ivf.is_some())
    }

    fn graph_path(&self, segment: u64, generation: u64, column: usize) -> PathBuf {
        self.dir.join(format!(
            "seg-{segment}-{generation}-{column}.{}",
            self.extension(column)
        ))
    }

    /// Writes a checkpoint if anything changed since the last one. Returns the sequence
    /// number it covers.
    pub fn checkpoint(&self) -> Result<u64> {
        self.write_checkpoint(false)
    }

    fn write_checkpoint(&self, force: bool) -> Result<u64> {
        let _files = self.files.lock();
        let (bytes, seq, referenced) = {
            let st = self.state.read();
            if !force && st.applied_seq == st.checkpointed_seq && self.dir.join(STATE_FILE).exists()
            {
                return Ok(st.checkpointed_seq);
            }
            self.encode_state(&st)
        };
        let path = self.dir.join(STATE_FILE);
        write_atomically(&path, &bytes)?;
        self.state.write().checkpointed_seq = seq;
        // Graph files no checkpoint refers to any more.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("seg-")
                    && (name.ends_with(".hnsw") || name.ends_with(".ivf"))
                    && !referenced.contains(&name)
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(seq)
    }

    /// The files of the last checkpoint (state file first), for snapshots.
    pub fn checkpoint_files(&self) -> Result<Vec<PathBuf>> {
        let _files = self.files.lock();
        let path = self.dir.join(STATE_FILE);
        let bytes = std::fs::read(&path).map_err(|e| StorageError::io(&path, e))?;
        let header = decode_state(&path, &bytes)?.0;
        let mut out = vec![path];
        for seg in &header.indexed {
            for c in 0..self.settings.vectors.len() {
                out.push(self.graph_path(seg.id, seg.generation, c));
            }
        }
        Ok(out)
    }

    /// Forgets the applied sequence numbers (used when a snapshot is restored next to a fresh
    /// log that numbers from 1 again), and checkpoints.
    pub fn reset_sequence(&self) -> Result<()> {
        {
            let mut st = self.state.write();
            st.applied_seq = 0;
            st.checkpointed_seq = 0;
        }
        self.write_checkpoint(true).map(|_| ())
    }

    fn encode_state(&self, st: &State) -> (Vec<u8>, u64, HashSet<String>) {
        let columns = self.settings.vectors.len();
        let mut referenced = HashSet::new();
        // Indexed segments whose graphs are on disk; rows past what a file holds (added since
        // it was written) are checkpointed inline, like appendable rows.
        let mut saved: HashMap<u64, u32> = HashMap::new();
        let indexed: Vec<IndexedHeader> = st
            .segments
            .iter()
            .filter(|s| s.is_indexed() && s.generation() > 0)
            .map(|s| {
                for c in 0..columns {
                    referenced.insert(format!(
                        "seg-{}-{}-{c}.{}",
                        s.id,
                        s.generation(),
                        self.extension(c)
                    ));
                }
                saved.insert(s.id, s.saved_rows() as u32);
                IndexedHeader {
                    id: s.id,
                    generation: s.generation(),
                    rows: s.saved_rows() as u64,
                }
            })
            .collect();
        let mut points = Vec::with_capacity(st.points.len() * 24);
        let mut floats: Vec<f32> = Vec::new();
        for (id, e) in &st.points {
            match *id {
                PointId::Num(n) => {
                    points.push(0u8);
                    points.extend_from_slice(&n.to_le_bytes());
                }
                PointId::Uuid(u) => {
                    points.push(1u8);
                    points.extend_from_slice(&u.to_le_bytes());
                }
            }
            if saved.get(&e.seg.id).is_some_and(|&rows| e.row < rows) {
                points.push(0u8);
                points.extend_from_slice(&e.seg.id.to_le_bytes());
                points.extend_from_slice(&e.row.to_le_bytes());
            } else {
                points.push(1u8);
                let present: Vec<(usize, Vec<f32>)> = (0..columns)
                    .filter_map(|c| e.seg.vector(c, e.row).map(|v| (c, v)))
                    .collect();
                points.push(present.len() as u8);
                for (c, v) in present {
                    points.extend_from_slice(&(c as u16).to_le_bytes());
                    points.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    floats.extend_from_slice(&v);
                }
            }
            let json = serde_json::to_vec(&e.payload).expect("payload serialises");
            points.extend_from_slice(&(json.len() as u32).to_le_bytes());
            points.extend_from_slice(&json);
        }
        let header = StateHeader {
            applied_seq: st.applied_seq,
            next_segment_id: st.next_segment_id,
            indexed,
            point_count: st.points.len() as u64,
            points_bytes: points.len() as u64,
        };
        let json = serde_json::to_vec(&header).expect("state serialises");
        let mut body = Vec::with_capacity(4 + json.len() + points.len() + floats.len() * 4);
        body.extend_from_slice(&(json.len() as u32).to_le_bytes());
        body.extend_from_slice(&json);
        body.extend_from_slice(&points);
        body.extend_from_slice(bytemuck_f32(&floats));
        let mut out = Vec::with_capacity(24 + body.len());
        out.extend_from_slice(STATE_MAGIC);
        out.extend_from_slice(&STATE_VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&persist::crc32(&body).to_le_bytes());
        out.extend_from_slice(&body);
        (out, st.applied_seq, referenced)
    }

    fn load(&self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|e| StorageError::io(path, e))?;
        let (header, points, floats) = decode_state(path, &bytes)?;
        let corrupt = |why: String| StorageError::corrupt(path, why);
        let mut segments: HashMap<u64, Arc<Segment>> = HashMap::new();
        for seg in &header.indexed {
            let mut graphs = Vec::new();
            for (c, v) in self.settings.vectors.iter().enumerate() {
                let file = self.graph_path(seg.id, seg.generation, c);
                if !file.exists() {
                    return Err(StorageError::corrupt(
                        &file,
                        "graph file named by the checkpoint is missing",
                    ));
                }
                graphs.push(
                    SegmentIndex::load(&file, v.ivf.is_some(), v.on_disk)
                        .map_err(|e| StorageError::corrupt(&file, e.to_string()))?,
                );
            }
            let rows = Rows {
                ids: vec![PointId::Num(u64::MAX); seg.rows as usize],
                live: Default::default(),
            };
            let segment = Segment::indexed(seg.id, graphs, seg.generation, rows);
            segment.set_saved_rows(seg.rows as usize);
            segments.insert(seg.id, Arc::new(segment));
        }
        let mut st = self.state.write();
        let mut r = persist::Cursor::new(points, 0);
        let mut at = 0usize;
        for _ in 0..header.point_count {
            let id = match r.u8().ok_or_else(|| corrupt("short point list".into()))? {
                0 => PointId::Num(r.u64().ok_or_else(|| corrupt("short point id".into()))?),
                1 => PointId::Uuid(r.u128().ok_or_else(|| corrupt("short point id".into()))?),
                t => return Err(corrupt(format!("bad id tag {t}"))),
            };
            let (seg, row) = match r.u8().ok_or_else(|| corrupt("short location".into()))? {
                0 => {
                    let s = r.u64().ok_or_else(|| corrupt("short location".into()))?;
                    let row = r.u32().ok_or_else(|| corrupt("short location".into()))?;
                    let seg = segments
                        .get(&s)
                        .ok_or_else(|| corrupt(format!("point {id} names unknown segment {s}")))?
                        .clone();
                    {
                        let mut rows = seg.rows.write();
                        if row as usize >= rows.ids.len() {
                            return Err(corrupt(format!("point {id}: row {row} out of range")));
                        }
                        rows.ids[row as usize] = id;
                        rows.live.set(row, true);
                    }
                    (seg, row)
                }
                1 => {
                    let n = r.u8().ok_or_else(|| corrupt("short location".into()))?;
                    let mut cols = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        let c = r
                            .u16()
                            .ok_or_else(|| corrupt("short vector entry".into()))?
                            as usize;
                        let len = r
                            .u32()
                            .ok_or_else(|| corrupt("short vector entry".into()))?
                            as usize;
                        let end = at + len;
                        if end > floats.len() || c >= self.settings.vectors.len() {
                            return Err(corrupt("vector block too short".into()));
                        }
                        cols.push((c, at, end));
                        at = end;
                    }
                    let views: Vec<(usize, &[f32])> =
                        cols.iter().map(|&(c, s, e)| (c, &floats[s..e])).collect();
                    let row = st.active.push_row(id, &views);
                    (st.active.clone(), row)
                }
                t => return Err(corrupt(format!("bad location tag {t}"))),
            };
            let len = r.u32().ok_or_else(|| corrupt("short payload".into()))? as usize;
            let json = r
                .bytes(len)
                .ok_or_else(|| corrupt("short payload".into()))?;
            let payload: Payload = serde_json::from_slice(json)
                .map_err(|e| corrupt(format!("payload of {id}: {e}")))?;
            st.points.insert(id, PointEntry { seg, row, payload });
        }
        let mut indexed: Vec<Arc<Segment>> = segments.into_values().collect();
        indexed.sort_by_key(|s| s.id);
        indexed.push(st.active.clone());
        st.segments = indexed;
        st.applied_seq = header.applied_seq;
        st.checkpointed_seq = header.applied_seq;
        st.next_segment_id = header.next_segment_id.max(1);
        self.seal_if_full(&mut st);
        Ok(())
    }
}

/// One named vector's values for the rows being moved (`None` where a row lacks it).
type ColumnCopy = Vec<Option<Vec<f32>>>;

fn bytemuck_f32(v: &[f32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

#[derive(Serialize, Deserialize)]
struct IndexedHeader {
    id: u64,
    generation: u64,
    /// Rows the graph file holds.
    rows: u64,
}

#[derive(Serialize, Deserialize)]
struct StateHeader {
    applied_seq: u64,
    next_segment_id: u64,
    indexed: Vec<IndexedHeader>,
    point_count: u64,
    points_bytes: u64,
}

fn decode_state<'a>(path: &Path, bytes: &'a [u8]) -> Result<(StateHeader, &'a [u8], Vec<f32>)> {
    let corrupt = |why: String| StorageError::corrupt(path, why);
    let mut r = persist::Cursor::new(bytes, 0);
    if bytes.len() < 24 || r.bytes(8) != Some(&STATE_MAGIC[..]) {
        return Err(corrupt("not a shard checkpoint (bad magic)".into()));
    }
    let version = r.u32().expect("length checked");
    if version != STATE_VERSION {
        return Err(corrupt(format!("unsupported checkpoint version {version}")));
    }
    let len = r.u64().expect("length checked");
    let crc = r.u32().expect("length checked");
    let body = usize::try_from(len)
        .ok()
        .and_then(|len| r.bytes(len))
        .ok_or_else(|| corrupt("truncated".into()))?;
    if persist::crc32(body) != crc {
        return Err(corrupt("checksum mismatch".into()));
    }
    let mut r = persist::Cursor::new(body, 0);
    let hlen = r.u32().ok_or_else(|| corrupt("short body".into()))? as usize;
    let json = r
        .bytes(hlen)
        .ok_or_else(|| corrupt("short header".into()))?;
    let header: StateHeader = serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?;
    let points = usize::try_from(header.points_bytes)
        .ok()
        .and_then(|n| r.bytes(n))
        .ok_or_else(|| corrupt("short point list".into()))?;
    if !r.remaining().is_multiple_of(4) {
        return Err(corrupt("vector block is not whole floats".into()));
    }
    let floats = r.f32s(r.remaining() / 4).expect("length checked");
    Ok((header, points, floats))
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename, then fsyncs the
/// directory, so a crash leaves either the old file or the new one.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    persist::replace_file(path, |out| out.write_all(bytes)).map_err(|e| StorageError::io(path, e))
}

/// Fsyncs a directory, making renames and creations in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    persist::sync_dir(dir).map_err(|e| StorageError::io(dir, e))
}
