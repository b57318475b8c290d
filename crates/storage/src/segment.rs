//! Segments: the units a shard's points live in.
//!
//! * An **appendable** segment takes new points as rows of plain `f32` vectors and is searched
//!   exactly. When it reaches the indexing threshold it is sealed (no more rows) and the
//!   optimizer moves its points into an indexed segment.
//! * An **indexed** segment holds one HNSW graph per named vector; row `r` is offset `r` of
//!   every graph (a point lacking a vector simply has no node in that graph). The optimizer
//!   appends rows to it through the graph's concurrent insert while searches go on.
//!
//! Which row of which segment holds the current version of a point is decided by the shard's
//! point map alone; a segment's `live` bits mirror it so that searches can test a row without
//! touching the map. Both change only under the shard's write lock, so a reader holding the
//! read lock sees each point live in exactly one place.

use crate::cagra::CagraSegment;
use crate::config::EffectiveVector;
use crate::Result;
use index_core::{AllowedSet, VectorIndexWrite};
use index_core::{
    PointFilter, PointId, PointOffset, ScoredOffset, SearchParams, TopK, VectorIndex,
};
use index_hnsw::HnswIndex;
use index_ivf::IvfIndex;
use index_ivf::{IvfConfig, ListEncoding};
use parking_lot::RwLock;
use quant::{kernels, Metric};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// A growable bitset over rows.
#[derive(Debug, Clone, Default)]
pub(crate) struct RowBits {
    words: Vec<u64>,
    count: usize,
}

impl RowBits {
    pub(crate) fn get(&self, row: u32) -> bool {
        self.words
            .get(row as usize / 64)
            .is_some_and(|w| w >> (row % 64) & 1 == 1)
    }

    pub(crate) fn set(&mut self, row: u32, on: bool) {
        let i = row as usize / 64;
        if i >= self.words.len() {
            if !on {
                return;
            }
            self.words.resize(i + 1, 0);
        }
        let mask = 1u64 << (row % 64);
        let was = self.words[i] & mask != 0;
        if on && !was {
            self.words[i] |= mask;
            self.count += 1;
        } else if !on && was {
            self.words[i] &= !mask;
            self.count -= 1;
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }
}

/// Which rows exist and which are current, and whose they are.
#[derive(Debug, Default, Clone)]
pub(crate) struct Rows {
    /// Row → point id (rows never reused).
    pub(crate) ids: Vec<PointId>,
    /// Rows holding the current version of their point.
    pub(crate) live: RowBits,
}

/// The vectors of an appendable segment: one flat buffer per named vector.
#[derive(Debug)]
pub(crate) struct PlainColumn {
    pub(crate) dim: usize,
    pub(crate) metric: Metric,
    /// `rows × dim` values; rows without this vector hold zeros.
    pub(crate) data: Vec<f32>,
    pub(crate) present: RowBits,
}

/// The staging lists of a sealed segment's columns ([`Segment::stage_sealed`]), under a lock
/// of their own: a search takes them (a clone of an `Arc`) while it holds the columns' read
/// lock, and the build holds no lock of the segment while it runs.
#[derive(Default)]
struct Staging {
    /// Bumped by every re-layout of the columns: lists built from an older layout are
    /// dropped instead of installed.
    layout: u64,
    /// By column; empty or `None` where there are none.
    lists: Vec<Option<Arc<StagingIvf>>>,
}

/// Sealed segments with fewer rows than this get no inverted lists: scanning them exactly
/// costs little, and the lists would cost more to build than they save.
pub(crate) const MIN_ROWS_TO_STAGE: usize = 2_048;

/// A search through the lists re-ranks exactly `RERANK_FACTOR` times the limit (or the
/// query's larger oversampling), and at least `RERANK_MIN` more than the limit: the lists'
/// 8-bit codes misorder close neighbours, rarely by more than a few places.
const RERANK_MIN: usize = 40;
const RERANK_FACTOR: usize = 4;

/// Share of the lists a search probes (more when the query's `hnsw_ef` asks for more than
/// [`STAGING_EF`]), and the fewest.
const STAGING_PROBE_SHARE: f64 = 0.15;
const STAGING_MIN_PROBES: usize = 8;
const STAGING_EF: usize = 128;

/// An inverted-file index over a sealed segment's rows (`√n` lists of 8-bit codes, trained by
/// a short k-means), built in a fraction of a second where its graph takes the optimizer
/// seconds to minutes. A bulk load seals segments far faster than they are indexed, and each
/// search then meets every waiting segment: through the lists it reads the rows of a few
/// probed lists, as codes, and re-ranks its best candidates against the `f32` rows, instead
/// of scanning every row (`a_search_through_staging_lists_keeps_recall` measures the recall).
pub(crate) struct StagingIvf {
    ivf: IvfIndex,
    /// Rows of the column when the lists were built: rows after them are scored exactly.
    rows: u32,
}

impl std::fmt::Debug for StagingIvf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagingIvf")
            .field("nlist", &self.ivf.nlist())
            .finish()
    }
}

impl StagingIvf {
    /// Lists over every row of `column` (a copy) that has a vector, or `None` when they cannot
    /// be trained.
    fn of(column: &PlainColumn) -> Option<StagingIvf> {
        let rows = column.data.len() / column.dim.max(1);
        let present = column.present.count();
        if column.dim == 0 || present < MIN_ROWS_TO_STAGE {
            return None;
        }
        let config = IvfConfig {
            nlist: Some(((present as f64).sqrt().round() as usize).max(1)),
            encoding: ListEncoding::Sq8,
            refine: false,
            keep_vectors: false,
            // A narrow filter never reaches the lists (the segment scans its rows instead),
            // so the lists always probe as planned.
            full_scan_threshold: 0,
            // A rough partition is enough when 15% of it is probed and the best candidates
            // re-ranked: a short k-means on a sample keeps the build cheap beside the upload
            // that seals segments (a quarter of FAISS's default work).
            kmeans_iterations: 5,
            max_points_per_list: 128,
            ..IvfConfig::default()
        };
        let mut ivf = IvfIndex::new(column.dim, column.metric, config).ok()?;
        // Rows without a vector hold zeros: train on, and list, the others only.
        let sample: std::borrow::Cow<'_, [f32]> = if present == rows {
            std::borrow::Cow::Borrowed(&column.data)
        } else {
            std::borrow::Cow::Owned(
                (0..rows as u32)
                    .filter(|&r| column.present.get(r))
                    .flat_map(|r| column.data[r as usize * column.dim..][..column.dim].iter())
                    .copied()
                    .collect(),
            )
        };
        ivf.train(&sample).ok()?;
        let mut r = 0;
        while r < rows {
            if !column.present.get(r as u32) {
                r += 1;
                continue;
            }
            let run = (r..rows)
                .take_while(|&x| column.present.get(x as u32))
                .count();
            ivf.add(
                r as u32,
                &column.data[r * column.dim..(r + run) * column.dim],
            )
            .ok()?;
            r += run;
        }
        ivf.shrink_to_fit();
        Some(StagingIvf {
            ivf,
            rows: rows as u32,
        })
    }

    /// The lists a search probes when `passing` of the rows pass its filter: more for a
    /// larger `hnsw_ef`, and for a filter that leaves fewer candidates in each list.
    fn nprobe(&self, params: &SearchParams, passing: usize) -> usize {
        let nlist = self.ivf.nlist();
        let ef = params.hnsw_ef.unwrap_or(STAGING_EF).max(STAGING_EF);
        let share = STAGING_PROBE_SHARE * ef as f64 / STAGING_EF as f64 * self.rows as f64
            / passing.max(1) as f64;
        ((nlist as f64 * share).ceil() as usize)
            .max(STAGING_MIN_PROBES)
            .min(nlist)
    }
}

/// What a segment stores its vectors in.
pub(crate) enum SegmentVectors {
    /// Plain rows, searched exactly.
    Plain(RwLock<Vec<PlainColumn>>),
    /// One graph per named vector.
    Indexed {
        /// Shared, so that a segment re-laid for a change of the named vectors
        /// ([`Segment::relaid`]) keeps the graphs it does not drop without copying them.
        graphs: Vec<Arc<SegmentIndex>>,
        /// Bumped each time the graphs' files are rewritten; 0: never written.
        generation: AtomicU64,
        /// Rows the files of the current generation hold.
        saved_rows: AtomicUsize,
    },
}

/// The index over one named vector of an indexed segment: a graph or inverted lists.
pub(crate) enum SegmentIndex {
    /// HNSW (the default, as Qdrant).
    Hnsw(HnswIndex),
    /// IVF (configured with `"index": {"type": "ivf", ...}`); always keeps the full vectors, so
    /// that stored vectors can be returned.
    Ivf(IvfIndex),
    /// CAGRA (configured with `"index": {"type": "cagra", ...}`), with a tail of the rows
    /// added since its last build.
    Cagra(CagraSegment),
}

/// Which index family a vector's indexed segments use: it names their files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexKind {
    Hnsw,
    Ivf,
    Cagra,
}

impl IndexKind {
    /// The kind a vector's settings ask for.
    pub(crate) fn of(v: &crate::config::EffectiveVector) -> IndexKind {
        if v.ivf.is_some() {
            IndexKind::Ivf
        } else if v.cagra.is_some() {
            IndexKind::Cagra
        } else {
            IndexKind::Hnsw
        }
    }

    /// File extension of the saved form.
    pub(crate) fn extension(self) -> &'static str {
        match self {
            IndexKind::Hnsw => "hnsw",
            IndexKind::Ivf => "ivf",
            IndexKind::Cagra => "cagra",
        }
    }
}

impl SegmentIndex {
    fn contains(&self, offset: PointOffset) -> bool {
        match self {
            SegmentIndex::Hnsw(g) => g.contains(offset),
            SegmentIndex::Ivf(i) => i.contains(offset),
            SegmentIndex::Cagra(c) => c.contains(offset),
        }
    }

    /// Advises full vectors left on disk for a pass in order (`true`) or back to random
    /// access (`false`): see `HnswIndex::vectors_read_in_order`.
    fn vectors_read_in_order(&self, in_order: bool) {
        match self {
            SegmentIndex::Hnsw(g) => g.vectors_read_in_order(in_order),
            SegmentIndex::Ivf(i) => i.vectors_read_in_order(in_order),
            // Its vectors are in RAM.
            SegmentIndex::Cagra(_) => {}
        }
    }

    fn vector(&self, offset: PointOffset) -> Option<Vec<f32>> {
        match self {
            SegmentIndex::Hnsw(g) => g.vector(offset),
            SegmentIndex::Ivf(i) => i.stored_vector(offset),
            SegmentIndex::Cagra(c) => c.vector(offset),
        }
    }

    fn search(
        &self,
        query: &[f32],
        params: &SearchParams,
        filter: Option<&dyn PointFilter>,
    ) -> Result<Vec<ScoredOffset>> {
        Ok(match self {
            SegmentIndex::Hnsw(g) => g.search(query, params, filter)?,
            SegmentIndex::Ivf(i) => i.search(query, params, filter)?,
            SegmentIndex::Cagra(c) => c.search(query, params, filter)?,
        })
    }

    pub(crate) fn insert(&self, offset: PointOffset, vector: &[f32]) -> index_core::Result<()> {
        match self {
            SegmentIndex::Hnsw(g) => g.insert(offset, vector),
            SegmentIndex::Ivf(i) => i.insert(offset, vector),
            SegmentIndex::Cagra(c) => c.insert(offset, vector),
        }
    }

    /// Inserts `vectors` at offsets `first, first + 1, ...` in parallel, skipping the rows that
    /// have none. HNSW takes a whole batch at once (it walks a large one through 8-bit codes of
    /// the batch, see `HnswIndex::insert_all`) when every row has a vector.
    pub(crate) fn insert_batch(
        &self,
        first: PointOffset,
        vectors: &[Option<Vec<f32>>],
    ) -> index_core::Result<()> {
        use rayon::prelude::*;
        if let SegmentIndex::Hnsw(g) = self {
            // Whole rows only: a row of another length would shift every row after it.
            let dim = g.dim();
            if vectors
                .iter()
                .all(|v| v.as_ref().is_some_and(|v| v.len() == dim))
            {
                let flat: Vec<f32> = vectors.iter().flatten().flatten().copied().collect();
                return g.insert_all(first, &flat);
            }
        }
        vectors
            .par_iter()
            .enumerate()
            .try_for_each(|(i, v)| match v {
                Some(v) => self.insert(first + i as u32, v),
                None => Ok(()),
            })
    }

    /// Work after a batch of inserts (HNSW: link any node no search could reach; CAGRA:
    /// rebuild when the rows added since the last build are many).
    pub(crate) fn finish_batch(&self) -> index_core::Result<()> {
        match self {
            SegmentIndex::Hnsw(g) => g.link_unreachable(),
            SegmentIndex::Ivf(_) => {}
            SegmentIndex::Cagra(c) => c.finish_batch()?,
        }
        Ok(())
    }

    /// Whether loading this index from its file with `vectors_on_disk` moves its full
    /// vectors to the file map for good: an HNSW over codes (the full vectors are its
    /// re-scoring copy; rows added later go to RAM beside the mapped ones). Not an `f32` graph,
    /// which walks its vectors and keeps them in RAM, nor IVF, whose next insert copies every
    /// mapped vector back into RAM (`index_ivf`'s full-vector store): its vectors are mapped
    /// from the next start.
    pub(crate) fn maps_full_vectors(&self) -> bool {
        match self {
            SegmentIndex::Hnsw(g) => g.config().storage.is_quantized(),
            SegmentIndex::Ivf(_) | SegmentIndex::Cagra(_) => false,
        }
    }

    pub(crate) fn save(&self, path: &Path) -> index_core::Result<()> {
        match self {
            SegmentIndex::Hnsw(g) => g.save(path),
            SegmentIndex::Ivf(i) => i.save(path),
            SegmentIndex::Cagra(c) => c.save(path),
        }
    }

    /// Loads the index of `kind` saved at `path`; `vectors_on_disk` leaves HNSW's and IVF's
    /// full vectors in the file map (CAGRA walks its vectors and keeps them in RAM).
    pub(crate) fn load(
        path: &Path,
        kind: IndexKind,
        vectors_on_disk: bool,
    ) -> index_core::Result<SegmentIndex> {
        Ok(match kind {
            IndexKind::Ivf => SegmentIndex::Ivf(IvfIndex::load(
                path,
                index_ivf::LoadOptions { vectors_on_disk },
            )?),
            IndexKind::Hnsw => SegmentIndex::Hnsw(HnswIndex::load(
                path,
                index_hnsw::LoadOptions { vectors_on_disk },
            )?),
            IndexKind::Cagra => SegmentIndex::Cagra(CagraSegment::load(path)?),
        })
    }
}

/// One segment.
pub(crate) struct Segment {
    pub(crate) id: u64,
    pub(crate) rows: RwLock<Rows>,
    pub(crate) vectors: SegmentVectors,
    /// A sealed appendable segment's staging lists (none on other segments).
    staging: RwLock<Staging>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("id", &self.id)
            .field("indexed", &self.is_indexed())
            .finish()
    }
}

/// A filter over rows: liveness, then the rows a materialised filter lets through or the
/// caller's predicate on the point id.
struct RowFilter<'a, P: Fn(PointId) -> bool + Sync> {
    rows: &'a Rows,
    predicate: Option<&'a P>,
    /// When set, only these rows pass: a materialised filter, which holds live rows only
    /// (see `filter_cache`), and is then the whole filter.
    allowed: Option<&'a AllowedSet>,
}

impl<P: Fn(PointId) -> bool + Sync> PointFilter for RowFilter<'_, P> {
    #[inline]
    fn allows(&self, offset: PointOffset) -> bool {
        if let Some(allowed) = self.allowed {
            return allowed.contains(offset);
        }
        if !self.rows.live.get(offset) {
            return false;
        }
        match self.predicate {
            Some(p) => p(self.rows.ids[offset as usize]),
            None => true,
        }
    }

    fn cardinality_estimate(&self) -> Option<usize> {
        self.allowed.map(AllowedSet::len)
    }

    fn allowed_offsets(&self) -> Option<Box<dyn Iterator<Item = PointOffset> + '_>> {
        self.allowed
            .map(|a| Box::new(a.iter()) as Box<dyn Iterator<Item = PointOffset>>)
    }

    fn as_bitset(&self) -> Option<&AllowedSet> {
        self.allowed
    }
}

impl Segment {
    /// An empty appendable segment.
    pub(crate) fn appendable(id: u64, vectors: &[EffectiveVector]) -> Segment {
        let columns = vectors
            .iter()
            .map(|v| PlainColumn {
                dim: v.dim,
                metric: v.distance.metric(),
                data: Vec::new(),
                present: RowBits::default(),
            })
            .collect();
        Segment {
            id,
            rows: RwLock::new(Rows::default()),
            vectors: SegmentVectors::Plain(RwLock::new(columns)),
            staging: RwLock::default(),
        }
    }

    /// An indexed segment over `graphs` (one per named vector, in config order).
    pub(crate) fn indexed(
        id: u64,
        graphs: Vec<SegmentIndex>,
        generation: u64,
        rows: Rows,
    ) -> Segment {
        Segment {
            id,
            rows: RwLock::new(rows),
            vectors: SegmentVectors::Indexed {
                graphs: graphs.into_iter().map(Arc::new).collect(),
                generation: AtomicU64::new(generation),
                saved_rows: AtomicUsize::new(0),
            },
            staging: RwLock::default(),
        }
    }

    /// Re-lays an appendable segment's columns in place for a change of the named vectors
    /// (caller holds the shard's write lock): column `c` of the new layout is the old column
    /// `keep[c]`, or a new one with no vector in any row.
    pub(crate) fn relay_plain(&self, keep: &[Option<usize>], vectors: &[EffectiveVector]) {
        let SegmentVectors::Plain(columns) = &self.vectors else {
            return;
        };
        let rows = self.rows.read().ids.len();
        let mut columns = columns.write();
        let mut old: Vec<Option<PlainColumn>> = columns.drain(..).map(Some).collect();
        *columns = keep
            .iter()
            .zip(vectors)
            .map(|(k, v)| match k.and_then(|o| old[o].take()) {
                Some(c) => c,
                None => PlainColumn {
                    dim: v.dim,
                    metric: v.distance.metric(),
                    data: vec![0.0; rows * v.dim],
                    present: RowBits::default(),
                },
            })
            .collect();
        // Lists are by column: drop them (the segment is scanned until it is indexed), and
        // make a build in progress drop its own.
        let mut staging = self.staging.write();
        staging.layout += 1;
        staging.lists.clear();
    }

    /// This indexed segment with its graphs re-laid for a change of the named vectors: column
    /// `c` keeps the old graph `keep[c]` (shared, not copied), or takes the next of `fresh`
    /// (empty graphs, in column order); same rows, files of `generation`.
    pub(crate) fn relaid(
        &self,
        keep: &[Option<usize>],
        fresh: Vec<SegmentIndex>,
        generation: u64,
    ) -> Segment {
        let SegmentVectors::Indexed {
            graphs, saved_rows, ..
        } = &self.vectors
        else {
            unreachable!("only indexed segments are re-laid into new ones");
        };
        let mut fresh = fresh.into_iter();
        let graphs = keep
            .iter()
            .map(|k| match k {
                Some(o) => graphs[*o].clone(),
                None => Arc::new(fresh.next().expect("a fresh graph per new column")),
            })
            .collect();
        Segment {
            id: self.id,
            rows: RwLock::new(self.rows.read().clone()),
            vectors: SegmentVectors::Indexed {
                graphs,
                generation: AtomicU64::new(generation),
                saved_rows: AtomicUsize::new(saved_rows.load(Ordering::Acquire)),
            },
            staging: RwLock::default(),
        }
    }

    /// This indexed segment over other graphs (the same rows, generation and saved rows): a
    /// graph reloaded from its file to serve its vectors from the file map. Takes the rows out
    /// of `self` rather than copying them: the caller holds the shard's write lock (so no
    /// reader is looking) and replaces `self` everywhere with the result.
    pub(crate) fn moved_to_graphs(&self, graphs: Vec<Arc<SegmentIndex>>) -> Segment {
        let SegmentVectors::Indexed {
            generation,
            saved_rows,
            ..
        } = &self.vectors
        else {
            unreachable!("only indexed segments have graphs");
        };
        Segment {
            id: self.id,
            rows: RwLock::new(std::mem::take(&mut *self.rows.write())),
            vectors: SegmentVectors::Indexed {
                graphs,
                generation: AtomicU64::new(generation.load(Ordering::Acquire)),
                saved_rows: AtomicUsize::new(saved_rows.load(Ordering::Acquire)),
            },
            staging: RwLock::default(),
        }
    }

    pub(crate) fn is_indexed(&self) -> bool {
        matches!(self.vectors, SegmentVectors::Indexed { .. })
    }

    /// Whether column `col` of this indexed segment is searched by a walk or lists rather
    /// than scanned whole (an HNSW built with `m` 0 has no graph).
    pub(crate) fn walks(&self, col: usize) -> bool {
        match &self.vectors {
            SegmentVectors::Indexed { graphs, .. } => graphs.get(col).is_some_and(|g| match &**g {
                SegmentIndex::Hnsw(h) => h.config().has_graph(),
                _ => true,
            }),
            SegmentVectors::Plain(_) => false,
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        match &self.vectors {
            SegmentVectors::Indexed { generation, .. } => generation.load(Ordering::Acquire),
            SegmentVectors::Plain(_) => 0,
        }
    }

    /// Rows the current generation's files hold.
    pub(crate) fn saved_rows(&self) -> usize {
        match &self.vectors {
            SegmentVectors::Indexed { saved_rows, .. } => saved_rows.load(Ordering::Acquire),
            SegmentVectors::Plain(_) => 0,
        }
    }

    pub(crate) fn set_saved_rows(&self, rows: usize) {
        if let SegmentVectors::Indexed { saved_rows, .. } = &self.vectors {
            saved_rows.store(rows, Ordering::Release);
        }
    }

    pub(crate) fn set_generation(&self, g: u64) {
        if let SegmentVectors::Indexed { generation, .. } = &self.vectors {
            generation.store(g, Ordering::Release);
        }
    }

    /// Number of rows ever written.
    pub(crate) fn row_count(&self) -> usize {
        self.rows.read().ids.len()
    }

    pub(crate) fn live_count(&self) -> usize {
        self.rows.read().live.count()
    }

    /// Appends a row to an appendable segment (caller holds the shard's write lock) and
    /// marks it live. `vectors` are by column index, already prepared.
    pub(crate) fn push_row(&self, id: PointId, vectors: &[(usize, &[f32])]) -> u32 {
        let SegmentVectors::Plain(columns) = &self.vectors else {
            unreachable!("rows are pushed only to appendable segments");
        };
        let mut rows = self.rows.write();
        let row = rows.ids.len() as u32;
        rows.ids.push(id);
        rows.live.set(row, true);
        let mut columns = columns.write();
        for c in columns.iter_mut() {
            let len = c.data.len();
            c.data.resize(len + c.dim, 0.0);
        }
        for &(col, v) in vectors {
            let c = &mut columns[col];
            if v.len() != c.dim {
                // Checked before logging, and a change of the named vectors checkpoints every
                // shard before and after it, so a replay does not cross one; were a checkpoint to
                // fail there, a vector of the old column's length is dropped, not written out of
                // bounds.
                continue;
            }
            let start = row as usize * c.dim;
            c.data[start..start + c.dim].copy_from_slice(v);
            c.present.set(row, true);
        }
        row
    }

    /// Gives each column of a sealed appendable segment inverted lists over its rows, for the
    /// searches that meet it before the optimizer has indexed it (see [`StagingIvf`]).
    /// Copies the columns under a short read lock and builds with no lock of the segment held,
    /// so searches, writes and a re-layout go on meanwhile; lists built from a layout a
    /// re-layout has replaced are dropped. The build's parallel parts run on the current
    /// rayon pool: the caller picks one no search waits on. Nothing to do for a segment below
    /// [`MIN_ROWS_TO_STAGE`] rows, or one already staged.
    pub(crate) fn stage_sealed(&self) {
        let SegmentVectors::Plain(columns) = &self.vectors else {
            return;
        };
        if self.row_count() < MIN_ROWS_TO_STAGE {
            return;
        }
        let layout = {
            let staging = self.staging.read();
            if !staging.lists.is_empty() {
                return;
            }
            staging.layout
        };
        let copies: Vec<Option<PlainColumn>> = columns
            .read()
            .iter()
            .map(|c| {
                (c.present.count() >= MIN_ROWS_TO_STAGE).then(|| PlainColumn {
                    dim: c.dim,
                    metric: c.metric,
                    data: c.data.clone(),
                    present: c.present.clone(),
                })
            })
            .collect();
        let built: Vec<Option<Arc<StagingIvf>>> = copies
            .iter()
            .map(|c| c.as_ref().and_then(StagingIvf::of).map(Arc::new))
            .collect();
        drop(copies);
        if built.iter().all(Option::is_none) {
            return;
        }
        let mut staging = self.staging.write();
        if staging.layout == layout {
            staging.lists = built;
        }
    }

    /// The staging lists of column `col`, if it has them.
    fn staging_of(&self, col: usize) -> Option<Arc<StagingIvf>> {
        self.staging.read().lists.get(col).cloned().flatten()
    }

    /// Whether every column with enough rows has its lists (tests).
    #[cfg(test)]
    pub(crate) fn is_staged(&self) -> bool {
        match &self.vectors {
            SegmentVectors::Plain(columns) => columns.read().iter().enumerate().all(|(i, c)| {
                self.staging_of(i).is_some() || c.present.count() < MIN_ROWS_TO_STAGE
            }),
            SegmentVectors::Indexed { .. } => false,
        }
    }

    pub(crate) fn set_live(&self, row: u32, on: bool) {
        self.rows.write().live.set(row, on);
    }

    /// Whether the row has a vector in column `col`.
    pub(crate) fn has_vector(&self, col: usize, row: u32) -> bool {
        match &self.vectors {
            SegmentVectors::Plain(columns) => columns.read()[col].present.get(row),
            SegmentVectors::Indexed { graphs, .. } => graphs[col].contains(row),
        }
    }

    /// Advises the graphs' vectors left on disk for a copy of every row in order (`true`),
    /// or back to the random access of searches (`false`).
    pub(crate) fn vectors_read_in_order(&self, in_order: bool) {
        if let SegmentVectors::Indexed { graphs, .. } = &self.vectors {
            graphs
                .iter()
                .for_each(|g| g.vectors_read_in_order(in_order));
        }
    }

    /// The stored (prepared) vector of a row in column `col`.
    pub(crate) fn vector(&self, col: usize, row: u32) -> Option<Vec<f32>> {
        match &self.vectors {
            SegmentVectors::Plain(columns) => {
                let columns = columns.read();
                let c = &columns[col];
                c.present
                    .get(row)
                    .then(|| c.data[row as usize * c.dim..(row as usize + 1) * c.dim].to_vec())
            }
            SegmentVectors::Indexed { graphs, .. } => {
                if graphs[col].contains(row) {
                    graphs[col].vector(row)
                } else {
                    None
                }
            }
        }
    }

    /// The `params.limit` closest live rows in column `col` that pass `predicate`, as
    /// (point id, internal distance). `query` is prepared. `allowed`, when given, is the set
    /// of rows a materialised filter lets through (the predicate is then `None`).
    pub(crate) fn search<P: Fn(PointId) -> bool + Sync>(
        &self,
        col: usize,
        query: &[f32],
        params: &SearchParams,
        predicate: Option<&P>,
        allowed: Option<&AllowedSet>,
    ) -> Result<Vec<(PointId, f32)>> {
        let rows = self.rows.read();
        let all_live = rows.live.count() == rows.ids.len();
        let filter = RowFilter {
            rows: &rows,
            predicate,
            allowed,
        };
        let found: Vec<ScoredOffset> = match &self.vectors {
            SegmentVectors::Plain(columns) => {
                let columns = columns.read();
                let c = &columns[col];
                let all = rows.ids.len() as u32;
                // Through the staging lists when the search may be approximate and the filter
                // is a bitset that leaves at least half the rows (a narrower one is scanned
                // exactly over its own rows; a predicate has no count to plan with).
                let staged = (!params.exact
                    && predicate.is_none()
                    && allowed.is_none_or(|a| a.len() * 2 >= all as usize))
                .then(|| self.staging_of(col))
                .flatten();
                let k = kernels();
                let mut top = TopK::new(params.limit);
                let consider = |top: &mut TopK, r: u32| {
                    let v = &c.data[r as usize * c.dim..(r as usize + 1) * c.dim];
                    let d = c.metric.distance(k, query, v);
                    if params.max_distance.is_none_or(|m| d <= m) {
                        top.push(ScoredOffset::new(r, d));
                    }
                };
                let scan = |top: &mut TopK| {
                    for_rows(allowed, all, |r| {
                        if c.present.get(r) && filter.allows(r) {
                            consider(top, r)
                        }
                    })
                };
                match staged {
                    None => scan(&mut top),
                    Some(staging) => {
                        #[cfg(test)]
                        tests::STAGED_SEARCHES.with(|c| c.set(c.get() + 1));
                        // Candidates from the probed lists by their codes, then the best of
                        // them by their rows; rows past the lists (none in a sealed segment)
                        // are scored exactly.
                        let passing = allowed.map_or(rows.live.count(), AllowedSet::len);
                        let probe = SearchParams {
                            limit: rerank_pool(params, all as usize),
                            exact: false,
                            hnsw_ef: None,
                            ivf_nprobe: Some(staging.nprobe(params, passing)),
                            rescore: Some(false),
                            oversampling: None,
                            max_distance: None,
                        };
                        let found = staging.ivf.search(query, &probe, Some(&filter))?;
                        if found.len() < probe.limit {
                            // The probed lists hold too few passing rows (the live or allowed
                            // ones lie elsewhere): the answer may need any row, so scan them.
                            scan(&mut top);
                        } else {
                            for s in found {
                                consider(&mut top, s.offset);
                            }
                            for r in staging.rows..all {
                                if c.present.get(r) && filter.allows(r) {
                                    consider(&mut top, r);
                                }
                            }
                        }
                    }
                }
                top.into_sorted_vec()
            }
            SegmentVectors::Indexed { graphs, .. } => {
                let g = &graphs[col];
                // Every row live and nothing to check: the unfiltered walk, which skips a test
                // per visited node. Otherwise the index plans the filtered search itself (a
                // scan of few allowed rows, or a walk), from the filter's count.
                if predicate.is_none() && allowed.is_none() && all_live {
                    g.search(query, params, None)?
                } else {
                    g.search(query, params, Some(&filter))?
                }
            }
        };
        Ok(found
            .into_iter()
            .map(|s| (rows.ids[s.offset as usize], s.distance))
            .collect())
    }
}

/// Calls `f` on each row of `allowed`, or on every row below `all` when there is no such set.
fn for_rows(allowed: Option<&AllowedSet>, all: u32, mut f: impl FnMut(u32)) {
    match allowed {
        Some(allowed) => allowed.iter().for_each(&mut f),
        None => (0..all).for_each(f),
    }
}

/// How many candidates a search through the staging lists keeps for the exact re-rank.
fn rerank_pool(params: &SearchParams, rows: usize) -> usize {
    let factor = params
        .oversampling
        .map_or(RERANK_FACTOR as f32, |o| o.max(RERANK_FACTOR as f32));
    ((params.limit as f32 * factor).ceil() as usize)
        .max(params.limit.saturating_add(RERANK_MIN))
        .min(rows.max(1))
        .min(index_core::MAX_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Distance;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const DIM: usize = 24;

    thread_local! {
        /// Searches this thread sent through staging lists: a test reads it before and after
        /// a search, so that it fails if the lists were not used.
        pub(super) static STAGED_SEARCHES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn staged_searches() -> usize {
        STAGED_SEARCHES.with(|c| c.get())
    }

    fn vector_config(distance: Distance) -> EffectiveVector {
        EffectiveVector {
            name: String::new(),
            dim: DIM,
            distance,
            hnsw: index_hnsw::HnswConfig::default(),
            on_disk: false,
            ivf: None,
            cagra: None,
        }
    }

    /// Rows around 64 centres, as far from them as the centres are from each other, prepared
    /// for the metric: overlapping clusters, where an inverted file must probe enough lists
    /// (with a twentieth of the probes, recall@10 falls to about 0.95).
    fn clustered(rng: &mut StdRng, centres: &[Vec<f32>], metric: Metric) -> Vec<f32> {
        let c = &centres[rng.random_range(0..centres.len())];
        let mut v: Vec<f32> = c.iter().map(|x| x + rng.random_range(-1.0..1.0)).collect();
        metric.prepare(&mut v);
        v
    }

    fn segment_of(distance: Distance, rows: usize, seed: u64) -> (Segment, Vec<Vec<f32>>, StdRng) {
        let mut rng = StdRng::seed_from_u64(seed);
        let metric = distance.metric();
        let centres: Vec<Vec<f32>> = (0..64)
            .map(|_| (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let seg = Segment::appendable(1, &[vector_config(distance)]);
        for id in 0..rows as u64 {
            let v = clustered(&mut rng, &centres, metric);
            seg.push_row(PointId::Num(id), &[(0, &v)]);
        }
        let queries = (0..100)
            .map(|_| clustered(&mut rng, &centres, metric))
            .collect();
        (seg, queries, rng)
    }

    fn search(
        seg: &Segment,
        q: &[f32],
        params: &SearchParams,
        allowed: Option<&AllowedSet>,
    ) -> Vec<(PointId, f32)> {
        seg.search(0, q, params, None::<&fn(PointId) -> bool>, allowed)
            .unwrap()
    }

    #[test]
    fn a_search_through_staging_lists_keeps_recall() {
        for (i, distance) in [
            Distance::Cosine,
            Distance::Euclid,
            Distance::Dot,
            Distance::Manhattan,
        ]
        .into_iter()
        .enumerate()
        {
            let (seg, queries, _) = segment_of(distance, 12_000, 7 + i as u64);
            let params = SearchParams::top(10);
            let exact = SearchParams {
                exact: true,
                ..params.clone()
            };
            let before: Vec<_> = queries
                .iter()
                .map(|q| search(&seg, q, &params, None))
                .collect();
            seg.stage_sealed();
            assert!(seg.is_staged(), "{distance:?}");
            let (mut hits, mut total) = (0, 0);
            for (q, plain) in queries.iter().zip(&before) {
                let truth = search(&seg, q, &exact, None);
                // Without lists the search is the exact scan itself.
                assert_eq!(plain, &truth, "{distance:?}");
                let staged = staged_searches();
                let coded = search(&seg, q, &params, None);
                assert!(staged_searches() > staged, "the lists were not used");
                assert_eq!(coded.len(), 10);
                // Distances are re-ranked exactly: each one is the row's exact distance, and
                // the list is ordered by them.
                for (id, d) in &coded {
                    let PointId::Num(row) = id else {
                        unreachable!()
                    };
                    let v = seg.vector(0, *row as u32).unwrap();
                    assert_eq!(
                        *d,
                        distance.metric().distance(kernels(), q, &v),
                        "{distance:?}"
                    );
                }
                assert!(coded.windows(2).all(|w| w[0].1 <= w[1].1));
                hits += coded.iter().filter(|h| truth.contains(h)).count();
                total += truth.len();
            }
            let recall = hits as f64 / total as f64;
            eprintln!("{distance:?}: recall@10 {recall}");
            assert!(recall >= 0.97, "{distance:?}: recall@10 {recall}");
        }
    }

    #[test]
    fn a_search_through_staging_lists_honours_filters_deaths_limits_and_new_rows() {
        let (seg, queries, mut rng) = segment_of(Distance::Euclid, 6_000, 3);
        seg.stage_sealed();
        // Rows pushed after the lists were built are scored exactly, not skipped.
        let late: Vec<f32> = queries[0].clone();
        let late_row = seg.push_row(PointId::Num(1_000_000), &[(0, &late)]);
        let hit = search(&seg, &queries[0], &SearchParams::top(3), None);
        assert_eq!(hit[0], (PointId::Num(1_000_000), 0.0));
        // Dead rows are never returned.
        seg.set_live(late_row, false);
        for r in (0..6_000).step_by(3) {
            seg.set_live(r, false);
        }
        let exact = SearchParams {
            exact: true,
            ..SearchParams::top(10)
        };
        for q in &queries {
            let coded = search(&seg, q, &SearchParams::top(10), None);
            assert!(coded.iter().all(|(id, _)| {
                let PointId::Num(r) = id else { unreachable!() };
                r % 3 != 0 && *r != 1_000_000
            }));
        }
        // A wide filter goes through the lists, a narrow one scans its own rows exactly.
        for (share, through_lists) in [(0.95, true), (0.2, false)] {
            let mut allowed = AllowedSet::with_capacity(6_001);
            for r in (0..6_000u32).filter(|r| r % 3 != 0 && rng.random_bool(share)) {
                allowed.insert(r);
            }
            let (mut hits, mut total) = (0, 0);
            for q in &queries {
                let truth = search(&seg, q, &exact, Some(&allowed));
                let staged = staged_searches();
                let coded = search(&seg, q, &SearchParams::top(10), Some(&allowed));
                if through_lists {
                    assert!(
                        staged_searches() > staged,
                        "share {share}: the lists were not used"
                    );
                } else {
                    assert_eq!(
                        coded, truth,
                        "share {share}: an exact scan of the allowed rows"
                    );
                }
                assert!(coded.iter().all(|(id, _)| {
                    let PointId::Num(r) = id else { unreachable!() };
                    allowed.contains(*r as u32)
                }));
                hits += coded.iter().filter(|h| truth.contains(h)).count();
                total += truth.len();
                // A distance bound cuts on exact distances, after the same candidates: the
                // bounded answer is the unbounded one's hits within the bound.
                let bound = truth[4].1;
                let near = search(
                    &seg,
                    q,
                    &SearchParams {
                        max_distance: Some(bound),
                        ..SearchParams::top(10)
                    },
                    Some(&allowed),
                );
                let within: Vec<_> = coded.iter().filter(|h| h.1 <= bound).cloned().collect();
                assert_eq!(near, within, "share {share}: the bound on exact distances");
                assert!(!near.is_empty());
            }
            eprintln!("share {share}: filtered recall@10 {hits}/{total}");
            assert!(
                hits as f64 / total as f64 >= 0.98,
                "share {share}: filtered recall {hits}/{total}"
            );
        }
    }

    #[test]
    fn small_or_vectorless_segments_get_no_lists() {
        let (seg, _, _) = segment_of(Distance::Dot, MIN_ROWS_TO_STAGE - 1, 1);
        seg.stage_sealed();
        assert!(seg.staging_of(0).is_none());
        // A column with rows but no vector in enough of them gets no lists either.
        let seg = Segment::appendable(
            2,
            &[vector_config(Distance::Dot), vector_config(Distance::Dot)],
        );
        let v = vec![0.5; DIM];
        for id in 0..3_000u64 {
            seg.push_row(PointId::Num(id), &[(0, &v)]);
        }
        seg.stage_sealed();
        assert!(seg.staging_of(0).is_some());
        assert!(seg.staging_of(1).is_none());
    }

    #[test]
    fn a_re_layout_drops_the_lists_and_never_waits_for_a_build() {
        let (seg, queries, _) = segment_of(Distance::Cosine, 12_000, 5);
        let exact = SearchParams {
            exact: true,
            ..SearchParams::top(10)
        };
        let truths: Vec<_> = queries
            .iter()
            .map(|q| search(&seg, q, &exact, None))
            .collect();
        // Builds race re-layouts that keep column 0 and add a column: whatever wins, a build
        // never installs lists for a layout that is gone, nothing waits for a build, and
        // searches stay correct.
        let layouts = [
            vec![vector_config(Distance::Cosine)],
            vec![
                vector_config(Distance::Cosine),
                vector_config(Distance::Dot),
            ],
        ];
        for round in 0..4 {
            std::thread::scope(|s| {
                s.spawn(|| seg.stage_sealed());
                s.spawn(|| {
                    let to = &layouts[(round + 1) % 2];
                    let keep: Vec<Option<usize>> =
                        (0..to.len()).map(|c| (c == 0).then_some(0)).collect();
                    seg.relay_plain(&keep, to);
                });
                for (q, truth) in queries.iter().zip(&truths).take(10) {
                    let got = search(&seg, q, &SearchParams::top(10), None);
                    assert_eq!(got.len(), 10);
                    assert!(got.iter().filter(|h| truth.contains(h)).count() >= 8);
                }
            });
        }
        // After a last re-layout the lists are gone and the search is the exact scan.
        seg.relay_plain(&[Some(0)], &layouts[0]);
        assert!(seg.staging_of(0).is_none());
        for (q, truth) in queries.iter().zip(&truths) {
            assert_eq!(&search(&seg, q, &SearchParams::top(10), None), truth);
        }
        seg.stage_sealed();
        assert!(seg.is_staged());
    }
}
