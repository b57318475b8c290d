//! Creating and deleting named vectors on a shard that holds points: the segments' columns
//! re-laid in place, nothing re-indexed.
//!
//! A shard's columns are its vectors in config order (by name), so creating or deleting one
//! moves the others. Column `c` of the new layout keeps the old column `keep[c]`: the one of
//! the same name, size and distance, or none (a new, empty column). Appendable segments re-lay
//! their rows' buffers; an indexed segment becomes a new segment object sharing the graphs it
//! keeps, with an empty graph per new column, and its files are re-linked (hard links, no
//! copy) as the next generation in the new numbering, so that a checkpoint never names files
//! of one layout with the columns of another.
//!
//! # Crash safety
//! Every checkpoint records the layout its inline vectors and graph files are numbered in
//! (`columns` in its header, see `checkpoint`), and loading maps that layout onto the
//! collection's config by name ([`keep_columns`]). The collection writes its config, the
//! commit point, between preparing the change (files of the new generation, harmless if
//! never referred to) and committing it in memory; a crash on either side of it loads
//! consistently: before, the old vectors; after, the new ones, each created vector empty and
//! each deleted one gone.

use super::*;
use crate::config::Distance;

/// One column of a checkpoint's layout (its header's `columns`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct ColumnHeader {
    pub(super) name: String,
    pub(super) dim: usize,
    pub(super) distance: Distance,
    /// Its graph files are IVF indexes.
    #[serde(default)]
    pub(super) ivf: bool,
    /// Its graph files are CAGRA indexes (absent in checkpoints from before CAGRA).
    #[serde(default)]
    pub(super) cagra: bool,
}

impl ColumnHeader {
    /// The index family of the column's graph files.
    pub(super) fn kind(&self) -> IndexKind {
        if self.ivf {
            IndexKind::Ivf
        } else if self.cagra {
            IndexKind::Cagra
        } else {
            IndexKind::Hnsw
        }
    }
}

/// The layout of columns for `vectors`.
pub(super) fn layout_of(vectors: &[EffectiveVector]) -> Vec<ColumnHeader> {
    vectors
        .iter()
        .map(|v| ColumnHeader {
            name: v.name.clone(),
            dim: v.dim,
            distance: v.distance,
            ivf: v.ivf.is_some(),
            cagra: v.cagra.is_some(),
        })
        .collect()
}

/// For each vector of `new`, the column of `old` holding it: same name, size and distance (a
/// vector deleted and created again with another shape starts empty).
pub(super) fn keep_columns(old: &[ColumnHeader], new: &[EffectiveVector]) -> Vec<Option<usize>> {
    new.iter()
        .map(|v| {
            old.iter()
                .position(|o| o.name == v.name && o.dim == v.dim && o.distance == v.distance)
        })
        .collect()
}

/// Whether `keep` leaves every column where it was.
pub(super) fn is_identity(keep: &[Option<usize>], old_columns: usize) -> bool {
    keep.len() == old_columns && keep.iter().enumerate().all(|(c, k)| *k == Some(c))
}

/// A change of the named vectors prepared on one shard: its optimizer and file writers held,
/// the re-laid segments' files written, nothing in memory changed yet. Dropping it abandons
/// the change (the files it wrote are named by no checkpoint, and go with the next one).
pub struct VectorsChange<'a> {
    shard: &'a LocalShard,
    _optimizer: parking_lot::MutexGuard<'a, ()>,
    _files: parking_lot::MutexGuard<'a, ()>,
    settings: ShardSettings,
    keep: Vec<Option<usize>>,
    /// Per indexed segment: its id, the generation of its re-laid files (0: it had none), and
    /// the empty graphs of the new columns, in column order.
    indexed: Vec<(u64, u64, Vec<SegmentIndex>)>,
}

impl LocalShard {
    /// Prepares the change to `settings`, whose vectors differ from the current ones by
    /// created and deleted names (the caller, the collection, holds its write lock: no
    /// operation is applied until [`VectorsChange::commit`]).
    pub fn prepare_vectors_change(&self, settings: ShardSettings) -> Result<VectorsChange<'_>> {
        let optimizer = self.optimizing.lock();
        let files = self.files.lock();
        let old = layout_of(&self.settings().vectors);
        let keep = keep_columns(&old, &settings.vectors);
        let segments: Vec<Arc<Segment>> = self
            .state
            .read()
            .segments
            .iter()
            .filter(|s| s.is_indexed())
            .cloned()
            .collect();
        let mut indexed = Vec::with_capacity(segments.len());
        for seg in &segments {
            let fresh = self.fresh_graphs(&keep, &settings.vectors)?;
            let generation = match seg.generation() {
                0 => 0,
                g => {
                    let fresh: Vec<&SegmentIndex> = fresh.iter().collect();
                    self.relink(seg.id, g, &keep, &old, &settings.vectors, &fresh)?
                }
            };
            indexed.push((seg.id, generation, fresh));
        }
        Ok(VectorsChange {
            shard: self,
            _optimizer: optimizer,
            _files: files,
            settings,
            keep,
            indexed,
        })
    }

    /// Empty graphs for the columns `keep` creates, in column order.
    pub(super) fn fresh_graphs(
        &self,
        keep: &[Option<usize>],
        vectors: &[EffectiveVector],
    ) -> Result<Vec<SegmentIndex>> {
        keep.iter()
            .zip(vectors)
            .filter(|(k, _)| k.is_none())
            .map(|(_, v)| self.new_graph(v, &Vec::new()))
            .collect()
    }

    /// Writes the files of indexed segment `seg` as generation `from + 1` in the layout of
    /// `new`: a hard link to the kept columns' files of generation `from` (laid out as `old`),
    /// the `fresh` graphs saved for the others. Returns the new generation.
    pub(super) fn relink(
        &self,
        seg: u64,
        from: u64,
        keep: &[Option<usize>],
        old: &[ColumnHeader],
        new: &[EffectiveVector],
        fresh: &[&SegmentIndex],
    ) -> Result<u64> {
        let to = from + 1;
        let mut fresh = fresh.iter();
        for (c, (k, v)) in keep.iter().zip(new).enumerate() {
            let dest = self.graph_file(seg, to, c, IndexKind::of(v));
            // A leftover of a change that crashed before its checkpoint: named by none.
            let _ = std::fs::remove_file(&dest);
            match k {
                Some(o) => {
                    let src = self.graph_file(seg, from, *o, old[*o].kind());
                    if std::fs::hard_link(&src, &dest).is_err() {
                        persist::replace_file(&dest, |out| {
                            std::io::copy(&mut std::fs::File::open(&src)?, out).map(|_| ())
                        })
                        .map_err(|e| StorageError::io(&dest, e))?;
                    }
                }
                None => fresh
                    .next()
                    .expect("a fresh graph per new column")
                    .save(&dest)?,
            }
        }
        sync_dir(&self.dir)?;
        Ok(to)
    }
}

impl VectorsChange<'_> {
    /// Applies the change in memory, under the shard's write lock: segments re-laid, the
    /// name → column map and the settings replaced together, materialised filters dropped
    /// (a `has_vector` condition may now answer otherwise). The caller checkpoints next.
    pub fn commit(self) {
        let VectorsChange {
            shard,
            settings,
            keep,
            indexed,
            ..
        } = self;
        let mut st = shard.state.write();
        let mut relaid: HashMap<u64, Arc<Segment>> = HashMap::new();
        for (id, generation, fresh) in indexed {
            if let Some(seg) = st.segments.iter().find(|s| s.id == id) {
                relaid.insert(id, Arc::new(seg.relaid(&keep, fresh, generation)));
            }
        }
        for s in st.segments.iter_mut() {
            match relaid.get(&s.id) {
                Some(n) => *s = n.clone(),
                // Appendable segments, the active one among them, keep their objects.
                None => s.relay_plain(&keep, &settings.vectors),
            }
        }
        for e in st.points.values_mut() {
            if let Some(n) = relaid.get(&e.seg.id) {
                e.seg = n.clone();
            }
        }
        st.columns = column_map(&settings.vectors);
        // Sparse vectors and multivectors created or deleted: a new one starts empty, a
        // deleted one leaves every point (and its index).
        st.sparse.retain(|name, _| settings.sparse.contains(name));
        for name in &settings.sparse {
            st.sparse.entry(name.clone()).or_default();
        }
        st.multi = settings
            .multi
            .iter()
            .map(|m| (m.name.clone(), m.clone()))
            .collect();
        let State {
            points,
            sparse,
            multi,
            ..
        } = &mut *st;
        for e in points.values_mut() {
            if e.sparse().iter().any(|(n, _)| !sparse.contains_key(n)) {
                let kept: Vec<(String, SparseVector)> = e
                    .sparse()
                    .iter()
                    .filter(|(n, _)| sparse.contains_key(n))
                    .cloned()
                    .collect();
                e.sparse = (!kept.is_empty()).then(|| kept.into_boxed_slice());
            }
            let gone =
                |(n, m): &(String, StoredMatrix)| multi.get(n).is_none_or(|c| c.dim != m.dim());
            if e.multi().iter().any(gone) {
                let kept: Vec<(String, StoredMatrix)> =
                    e.multi().iter().filter(|x| !gone(x)).cloned().collect();
                e.multi = (!kept.is_empty()).then(|| kept.into_boxed_slice());
            }
        }
        *st.filters.get_mut() = FilterCache::default();
        *shard.settings.write() = Arc::new(settings);
    }
}
