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

use crate::config::EffectiveVector;
use crate::Result;
use index_core::{AllowedSet, VectorIndexWrite};
use index_core::{
    PointFilter, PointId, PointOffset, ScoredOffset, SearchParams, TopK, VectorIndex,
};
use index_hnsw::HnswIndex;
use index_ivf::IvfIndex;
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
}

impl SegmentIndex {
    /// File extension of the saved form.
    pub(crate) fn extension(ivf: bool) -> &'static str {
        if ivf {
            "ivf"
        } else {
            "hnsw"
        }
    }

    fn contains(&self, offset: PointOffset) -> bool {
        match self {
            SegmentIndex::Hnsw(g) => g.contains(offset),
            SegmentIndex::Ivf(i) => i.contains(offset),
        }
    }

    fn vector(&self, offset: PointOffset) -> Option<Vec<f32>> {
        match self {
            SegmentIndex::Hnsw(g) => g.vector(offset),
            SegmentIndex::Ivf(i) => i.stored_vector(offset),
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
        })
    }

    pub(crate) fn insert(&self, offset: PointOffset, vector: &[f32]) -> index_core::Result<()> {
        match self {
            SegmentIndex::Hnsw(g) => g.insert(offset, vector),
            SegmentIndex::Ivf(i) => i.insert(offset, vector),
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

    /// Work after a batch of inserts (HNSW: link any node no search could reach).
    pub(crate) fn finish_batch(&self) {
        if let SegmentIndex::Hnsw(g) = self {
            g.link_unreachable();
        }
    }

    pub(crate) fn save(&self, path: &Path) -> index_core::Result<()> {
        match self {
            SegmentIndex::Hnsw(g) => g.save(path),
            SegmentIndex::Ivf(i) => i.save(path),
        }
    }

    pub(crate) fn load(
        path: &Path,
        ivf: bool,
        vectors_on_disk: bool,
    ) -> index_core::Result<SegmentIndex> {
        Ok(if ivf {
            SegmentIndex::Ivf(IvfIndex::load(
                path,
                index_ivf::LoadOptions { vectors_on_disk },
            )?)
        } else {
            SegmentIndex::Hnsw(HnswIndex::load(
                path,
                index_hnsw::LoadOptions { vectors_on_disk },
            )?)
        })
    }
}

/// One segment.
pub(crate) struct Segment {
    pub(crate) id: u64,
    pub(crate) rows: RwLock<Rows>,
    pub(crate) vectors: SegmentVectors,
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
        }
    }

    pub(crate) fn is_indexed(&self) -> bool {
        matches!(self.vectors, SegmentVectors::Indexed { .. })
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
                let k = kernels();
                let mut top = TopK::new(params.limit);
                let mut consider = |r: u32| {
                    if c.present.get(r) && filter.allows(r) {
                        let v = &c.data[r as usize * c.dim..(r as usize + 1) * c.dim];
                        let d = c.metric.distance(k, query, v);
                        if params.max_distance.is_none_or(|m| d <= m) {
                            top.push(ScoredOffset::new(r, d));
                        }
                    }
                };
                match allowed {
                    Some(allowed) => allowed.iter().for_each(&mut consider),
                    None => (0..rows.ids.len() as u32).for_each(&mut consider),
                }
                top.into_sorted_vec()
            }
            SegmentVectors::Indexed { graphs, .. } => {
                let g = &graphs[col];
                // Every row live and nothing to check: the unfiltered walk, which skips a test
                // per visited node. Otherwise the index plans the filtered search itself (an
                // exact scan of few allowed rows, or a walk), from the filter's count.
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
