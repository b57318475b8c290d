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
//!
//! The impl of [`LocalShard`] is split by concern: reads and searches (`read`), the
//! optimizer (`optimize`), checkpoints and loading (`checkpoint`); this file holds the types,
//! opening and the write path.

mod checkpoint;
mod multi;
mod optimize;
mod read;
mod relayout;

pub use relayout::VectorsChange;

use crate::cagra::CagraSegment;
use crate::config::EffectiveVector;
use crate::filter_cache::{FilterCache, FilterRows};
use crate::multi::{MultiVector, StoredMatrix};
use crate::ops::{Operation, PointWrite};
use crate::query::Query;
use crate::segment::{IndexKind, SegmentIndex};
use crate::segment::{Rows, Segment, SegmentVectors, MIN_ROWS_TO_STAGE};
use crate::sparse::{SparseIndex, SparseVector};
use crate::wal::Wal;
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
use std::sync::{Arc, Weak};

const STATE_MAGIC: &[u8; 8] = b"VRSHARD\0";
const STATE_VERSION: u32 = 4;
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
    /// Its sparse vectors by name, as selected (empty when not asked for or none).
    pub sparse: Vec<(String, SparseVector)>,
    /// Its multivectors by name, as selected (empty when not asked for or none).
    pub multi: Vec<(String, MultiVector)>,
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

/// A search over one named vector: its nearest neighbours to a vector, or the points that
/// score best against examples.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// Which vector (`""` for the unnamed one).
    pub vector_name: String,
    /// What to rank points by.
    pub query: Query,
    /// Payload filter.
    pub filter: Option<Arc<Filter>>,
    /// Limit (offset included), ef, exactness, score bound.
    pub params: SearchParams,
    /// Payload to return.
    pub with_payload: PayloadSelector,
    /// Vectors to return.
    pub with_vector: VectorSelector,
    /// Only these points are scored, each exactly (a query re-scoring what sub-queries
    /// found); `None` searches every point.
    pub candidates: Option<Arc<[PointId]>>,
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
    /// Its sparse vectors by name (no allocation for a point that has none).
    sparse: Option<Box<[(String, SparseVector)]>>,
    /// Its multivectors by name (no allocation for a point that has none).
    multi: Option<Box<[(String, StoredMatrix)]>>,
}

impl PointEntry {
    fn multi(&self) -> &[(String, StoredMatrix)] {
        self.multi.as_deref().unwrap_or(&[])
    }

    fn multi_vector(&self, name: &str) -> Option<&StoredMatrix> {
        self.multi().iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn sparse(&self) -> &[(String, SparseVector)] {
        self.sparse.as_deref().unwrap_or(&[])
    }

    fn sparse_vector(&self, name: &str) -> Option<&SparseVector> {
        self.sparse()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

struct State {
    /// Vector name → column of every segment: the settings' vectors, by position. Here, under
    /// the state's lock, because creating or deleting a named vector re-lays the segments'
    /// columns (`vectors_change`): a reader sees the map and the segments of one layout.
    columns: HashMap<String, usize>,
    points: BTreeMap<PointId, PointEntry>,
    /// Indexed segments, sealed appendables waiting for the optimizer, then `active`.
    segments: Vec<Arc<Segment>>,
    active: Arc<Segment>,
    indexes: PayloadIndexes,
    /// An inverted index per sparse vector, by name (built from the points at load).
    sparse: HashMap<String, SparseIndex>,
    /// The multivectors, by name: their rows' dimension and metric (the matrices live in
    /// the point entries and are scored exactly).
    multi: HashMap<String, MultiColumn>,
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
    /// Indexed segments a shard keeps before the optimizer merges the smallest
    /// (`default_segment_number`; 0 or unset: 1).
    pub segment_target: usize,
    /// (fraction, minimum) of deleted rows that triggers a rebuild.
    pub vacuum: (f64, usize),
    /// The sparse vectors' names.
    pub sparse: Vec<String>,
    /// The multivectors.
    pub multi: Vec<MultiColumn>,
}

/// A multivector as a shard sees it.
#[derive(Debug, Clone)]
pub struct MultiColumn {
    /// Its name.
    pub name: String,
    /// Values per row.
    pub dim: usize,
    /// The rows' metric.
    pub metric: quant::Metric,
    /// When it is indexed: the hidden column of its encodings, and their encoder.
    pub encodings: Option<(String, Arc<crate::multi::Fde>)>,
    /// Its matrices are stored at half width (`datatype: float16`).
    pub half: bool,
}

/// A local shard.
pub struct LocalShard {
    id: u32,
    dir: PathBuf,
    /// Replaced whole by a PATCH of the collection ([`LocalShard::update_settings`]).
    settings: RwLock<Arc<ShardSettings>>,
    state: RwLock<State>,
    /// One optimizer step at a time.
    optimizing: Mutex<()>,
    /// Serialises checkpoints with the optimizer's file writes.
    files: Mutex<()>,
    /// Sealed segments for the staging thread to build lists for (started with the first).
    stager: Mutex<Option<std::sync::mpsc::Sender<Weak<Segment>>>>,
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
        if crate::config::is_hidden_column(name) {
            return false;
        }
        match self.columns.get(name) {
            Some(&c) => self.entry.seg.has_vector(c, self.entry.row),
            None => {
                self.entry.sparse_vector(name).is_some() || self.entry.multi_vector(name).is_some()
            }
        }
    }
}

impl LocalShard {
    /// The settings in force.
    pub(crate) fn settings(&self) -> Arc<ShardSettings> {
        self.settings.read().clone()
    }

    /// Takes new settings (a PATCH of the collection; the vectors' names, sizes and
    /// distances stay): searches and segments built from now on use them, and the optimizer
    /// rebuilds the indexed segments whose graphs were built otherwise
    /// ([`LocalShard::stale_candidate`]).
    pub fn update_settings(&self, settings: ShardSettings) {
        *self.settings.write() = Arc::new(settings);
    }

    /// Opens the shard in `dir`, loading its last checkpoint if there is one.
    pub fn open(
        id: u32,
        dir: &Path,
        settings: ShardSettings,
        index_defs: &[(String, Value)],
    ) -> Result<LocalShard> {
        persist::create_dir_durable(dir).map_err(|e| StorageError::io(dir, e))?;
        let active = Arc::new(Segment::appendable(0, &settings.vectors));
        let shard = LocalShard {
            id,
            dir: dir.to_path_buf(),
            state: RwLock::new(State {
                columns: column_map(&settings.vectors),
                points: BTreeMap::new(),
                segments: vec![active.clone()],
                active,
                indexes: PayloadIndexes::new(),
                sparse: settings
                    .sparse
                    .iter()
                    .map(|n| (n.clone(), SparseIndex::default()))
                    .collect(),
                multi: settings
                    .multi
                    .iter()
                    .map(|m| (m.name.clone(), m.clone()))
                    .collect(),
                filters: Mutex::new(FilterCache::default()),
                applied_seq: 0,
                checkpointed_seq: 0,
                next_segment_id: 1,
            }),
            settings: RwLock::new(Arc::new(settings)),
            optimizing: Mutex::new(()),
            files: Mutex::new(()),
            stager: Mutex::new(None),
        };
        let path = dir.join(STATE_FILE);
        if path.exists() {
            shard.load(&path)?;
        }
        for (field, schema) in index_defs {
            shard.create_payload_index(field, schema)?;
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

    /// Whether the optimizer has work waiting (sealed segments, a due vacuum, segments built
    /// under settings a PATCH changed, or segments to merge).
    pub fn needs_optimization(&self) -> bool {
        let st = self.state.read();
        st.segments
            .iter()
            .any(|s| !s.is_indexed() && !Arc::ptr_eq(s, &st.active))
            || self.vacuum_candidate(&st).is_some()
            || self.stale_candidate(&st).is_some()
            || self.merge_candidate(&st).is_some()
    }

    /// Bytes of vectors and codes the indexed segments hold: (in RAM, in file maps).
    pub fn index_vector_bytes_split(&self) -> (usize, usize) {
        use index_core::VectorIndex;
        let st = self.state.read();
        st.segments
            .iter()
            .filter_map(|s| match &s.vectors {
                SegmentVectors::Indexed { graphs, .. } => Some(graphs),
                SegmentVectors::Plain(_) => None,
            })
            .flatten()
            .map(|g| {
                let m = match &**g {
                    SegmentIndex::Hnsw(h) => h.memory_usage(),
                    SegmentIndex::Ivf(i) => i.memory_usage(),
                    SegmentIndex::Cagra(c) => c.memory_usage(),
                };
                (m.vector_bytes, m.vector_bytes_on_disk)
            })
            .fold((0, 0), |(r, d), (a, b)| (r + a, d + b))
    }

    /// The column of vector `name` as a request names it: hidden columns are nobody's.
    fn column(st: &State, name: &str) -> Result<usize> {
        if crate::config::is_hidden_column(name) {
            return Err(StorageError::UnknownVector {
                name: name.to_string(),
            });
        }
        Self::any_column(st, name)
    }

    /// The column of `name`, hidden ones included.
    fn any_column(st: &State, name: &str) -> Result<usize> {
        st.columns
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
            columns,
            points,
            active,
            indexes,
            sparse,
            multi,
            filters,
            ..
        } = &mut *st;
        let Some(op) = op else {
            st.applied_seq = seq;
            return false;
        };
        let mut w = Writer {
            columns,
            points,
            active,
            indexes,
            sparse,
            multi,
            filters: filters.get_mut(),
        };
        w.apply_op(op);
        st.applied_seq = seq;
        self.seal_if_full(&mut st)
    }

    fn seal_if_full(&self, st: &mut State) -> bool {
        let Some(threshold) = self.settings().indexing_threshold else {
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
            &self.settings().vectors,
        ));
        st.next_segment_id += 1;
        st.segments.push(seg.clone());
        let sealed = std::mem::replace(&mut st.active, seg);
        // Inverted lists for the searches that meet the sealed segment before the optimizer
        // indexes it, built off the write lock: during a bulk load segments seal faster than
        // they are indexed, and each would otherwise be scanned whole by every search.
        if sealed.row_count() >= MIN_ROWS_TO_STAGE {
            self.stage(&sealed);
        }
    }

    /// Hands a sealed segment to the shard's staging thread, started on first use: one
    /// long-lived thread builds every list of the shard in turn, rather than a thread and a
    /// pool started for every seal, and builds never compete with each other for the cores
    /// the upload and the optimizer use. The queue holds weak references, so a segment the
    /// optimizer has indexed meanwhile is skipped; the thread ends when the shard is dropped.
    fn stage(&self, sealed: &Arc<Segment>) {
        let mut stager = self.stager.lock();
        if let Some(tx) = stager.as_ref() {
            if tx.send(Arc::downgrade(sealed)).is_ok() {
                return;
            }
        }
        let (tx, rx) = std::sync::mpsc::channel::<Weak<Segment>>();
        let spawned = std::thread::Builder::new()
            .name(format!("stage-{}", self.id))
            .spawn(move || {
                // The lists' k-means and encoding run on this pool of one thread: never on a
                // pool that searches may be waiting on.
                let Ok(pool) = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(|_| "stage-build".into())
                    .start_handler(|_| crate::priority::register_this_thread())
                    .exit_handler(|_| crate::priority::unregister_this_thread())
                    .build()
                else {
                    return;
                };
                while let Ok(segment) = rx.recv() {
                    if let Some(segment) = segment.upgrade() {
                        pool.install(|| segment.stage_sealed());
                    }
                }
            });
        match spawned {
            Ok(_) => {
                let _ = tx.send(Arc::downgrade(sealed));
                *stager = Some(tx);
            }
            Err(e) => tracing::warn!(
                shard = self.id,
                error = %e,
                "no thread to build a sealed segment's lists; it is scanned exactly"
            ),
        }
    }

    /// Seals the appendable segment early when the shard already has an indexed segment and
    /// the appendable one holds at least `min_rows` rows: called when writes have paused, so
    /// that the tail of a bulk load below the indexing threshold is indexed instead of
    /// scanned exactly by every search. A shard with no indexed segment stays exact (small
    /// collections give exactly the brute-force answer, as in Qdrant). Returns whether it
    /// sealed.
    pub fn seal_idle_tail(&self, min_rows: usize) -> bool {
        if self.settings().indexing_threshold.is_none() {
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
}

/// The parts of a shard's state a logged operation writes, borrowed under the write lock.
struct Writer<'a> {
    columns: &'a HashMap<String, usize>,
    points: &'a mut BTreeMap<PointId, PointEntry>,
    active: &'a Arc<Segment>,
    indexes: &'a mut PayloadIndexes,
    sparse: &'a mut HashMap<String, SparseIndex>,
    multi: &'a HashMap<String, MultiColumn>,
    filters: &'a mut FilterCache,
}

impl Writer<'_> {
    /// Applies one operation.
    fn apply_op(&mut self, op: &Operation) {
        match op {
            Operation::Upsert(writes) => {
                for w in writes {
                    // The row a re-upsert replaces dies: its bits go (materialised filters hold
                    // live rows only, so a search needs no liveness test on top of them).
                    if let Some(old) = self.points.get(&w.id) {
                        self.filters.point_written(old.seg.id, old.row, |_| false);
                    }
                    self.upsert_one(w);
                    self.refresh_filters(w.id);
                }
            }
            Operation::Delete(ids) => {
                for id in ids {
                    if let Some(e) = self.points.remove(id) {
                        e.seg.set_live(e.row, false);
                        for (name, v) in e.sparse() {
                            if let Some(index) = self.sparse.get_mut(name) {
                                index.remove(*id, Some(v));
                            }
                        }
                        self.filters.point_written(e.seg.id, e.row, |_| false);
                        self.indexes.update(*id, Some(&e.payload), None);
                    }
                }
            }
            Operation::SetPayload { ids, payload, key } => {
                let key = key.as_deref().and_then(|k| KeyPath::parse(k).ok());
                self.edit_payloads(ids, |p| {
                    let _ = payload::set_payload(p, payload, key.as_ref());
                });
            }
            Operation::OverwritePayload { ids, payload } => {
                self.edit_payloads(ids, |p| *p = payload.clone());
            }
            Operation::DeletePayload { ids, keys } => {
                let keys: Vec<KeyPath> =
                    keys.iter().filter_map(|k| KeyPath::parse(k).ok()).collect();
                self.edit_payloads(ids, |p| payload::delete_keys(p, &keys));
            }
            Operation::ClearPayload(ids) => {
                self.edit_payloads(ids, |p| p.clear());
            }
            Operation::Batch(ops) => {
                for op in ops {
                    self.apply_op(op);
                }
            }
        }
    }

    fn upsert_one(&mut self, w: &PointWrite) {
        // A vector whose name the layout lacks was deleted after the write was logged: a
        // replay drops it, as the deletion did.
        let mut cols: Vec<(usize, &[f32])> = w
            .vectors
            .iter()
            .filter_map(|(name, v)| self.columns.get(name).map(|&c| (c, v.as_slice())))
            .collect();
        // An indexed multivector's encoding goes to its hidden column (derived data: never
        // logged, computed again on replay).
        let encoded: Vec<(usize, Vec<f32>)> = w
            .multi
            .iter()
            .filter_map(|(name, m)| {
                let multi = self.multi.get(name).filter(|c| c.dim == m.dim())?;
                let (column, fde) = multi.encodings.as_ref()?;
                Some((*self.columns.get(column)?, fde.encode_document(m)))
            })
            .collect();
        cols.extend(encoded.iter().map(|(c, v)| (*c, v.as_slice())));
        let row = self.active.push_row(w.id, &cols);
        // Likewise a sparse vector whose name is gone.
        let sparse: Vec<(String, SparseVector)> = w
            .sparse
            .iter()
            .filter(|(name, _)| self.sparse.contains_key(name))
            .cloned()
            .collect();
        // And a multivector.
        let multi: Vec<(String, StoredMatrix)> = w
            .multi
            .iter()
            .filter_map(|(name, m)| {
                // A matrix logged for a multivector deleted and created since with another
                // size is dropped, as the deletion dropped it.
                let column = self.multi.get(name).filter(|c| c.dim == m.dim())?;
                Some((name.clone(), StoredMatrix::store(m.clone(), column.half)))
            })
            .collect();
        let entry = PointEntry {
            seg: self.active.clone(),
            row,
            payload: w.payload.clone(),
            sparse: (!sparse.is_empty()).then(|| sparse.into_boxed_slice()),
            multi: (!multi.is_empty()).then(|| multi.into_boxed_slice()),
        };
        let old = self.points.insert(w.id, entry);
        let new = &self.points[&w.id];
        for (name, index) in self.sparse.iter_mut() {
            let before = old.as_ref().and_then(|o| o.sparse_vector(name));
            match new.sparse_vector(name) {
                Some(v) => index.insert(w.id, before, v),
                None => index.remove(w.id, before),
            }
        }
        if let Some(old) = old {
            old.seg.set_live(old.row, false);
            self.indexes
                .update(w.id, Some(&old.payload), Some(&w.payload));
        } else {
            self.indexes.update(w.id, None, Some(&w.payload));
        }
    }

    /// Re-evaluates the materialised filters on point `id` after a write to it.
    fn refresh_filters(&mut self, id: PointId) {
        let Some(e) = self.points.get(&id) else {
            return;
        };
        let view = View {
            id,
            entry: e,
            columns: self.columns,
        };
        self.filters
            .point_written(e.seg.id, e.row, |f| f.matches(&view));
    }

    fn edit_payloads(&mut self, ids: &[PointId], edit: impl Fn(&mut Payload)) {
        for id in ids {
            if let Some(e) = self.points.get_mut(id) {
                let old = e.payload.clone();
                edit(&mut e.payload);
                self.indexes.update(*id, Some(&old), Some(&e.payload));
            }
            self.refresh_filters(*id);
        }
    }
}

/// Vector name → column, for vectors laid out in this order.
fn column_map(vectors: &[EffectiveVector]) -> HashMap<String, usize> {
    vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (v.name.clone(), i))
        .collect()
}

pub(crate) use checkpoint::{sync_dir, write_atomically};

/// One named vector's values for the rows being moved (`None` where a row lacks it).
type ColumnCopy = Vec<Option<Vec<f32>>>;
