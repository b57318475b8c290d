//! The optimizer's work on a shard: vacuum, sealing into indexed segments, graph files.

use super::*;

impl LocalShard {
    pub(super) fn vacuum_candidate(&self, st: &State) -> Option<Arc<Segment>> {
        let (fraction, min) = self.settings().vacuum;
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

    /// An indexed segment whose graphs were built with settings other than those in force
    /// (a PATCH changed the HNSW or quantization settings): rebuilt as a vacuum would.
    pub(super) fn stale_candidate(&self, st: &State) -> Option<Arc<Segment>> {
        let settings = self.settings();
        st.segments
            .iter()
            .find(|s| s.is_indexed() && built_otherwise(s, &settings.vectors))
            .cloned()
    }

    /// Two indexed segments to merge, as (source, target): when a shard holds more indexed
    /// segments than `default_segment_number` asks (one when unset: the shard's one growing
    /// graph), the one with the fewest live rows goes into the largest other whose rows it
    /// still fits beside under `max_segment_size`. The source's live rows are inserted into
    /// the target's graphs, as a sealed segment's are, so a merge costs the smaller side
    /// only; vacuums, rebuilds for other settings and segments capped by size leave shards
    /// with many small graphs otherwise, each walked by every search.
    pub(super) fn merge_candidate(&self, st: &State) -> Option<(Arc<Segment>, Arc<Segment>)> {
        let settings = self.settings();
        let indexed: Vec<&Arc<Segment>> = st
            .segments
            .iter()
            .filter(|s| s.is_indexed() && !built_otherwise(s, &settings.vectors))
            .collect();
        if indexed.len() <= settings.segment_target.max(1) {
            return None;
        }
        let src = indexed.iter().min_by_key(|s| (s.live_count(), s.id))?;
        let moving = src.live_count();
        let target = indexed
            .iter()
            .filter(|t| !Arc::ptr_eq(t, src) && t.live_count() >= moving)
            .filter(|t| t.row_count() + moving <= settings.max_segment_points)
            .max_by_key(|t| (t.live_count(), std::cmp::Reverse(t.id)))?;
        Some(((*src).clone(), (*target).clone()))
    }

    /// Runs one optimizer step on `pool`: indexes the oldest sealed segment, or rebuilds an
    /// indexed segment with too many deleted rows or built under other settings, or merges a
    /// small indexed segment into a larger one, and checkpoints (`log` first). Returns
    /// whether there was work.
    pub fn optimize(&self, pool: &rayon::ThreadPool, log: &Wal) -> Result<bool> {
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
                    let settings = self.settings();
                    let target = st
                        .segments
                        .iter()
                        .filter(|s| s.is_indexed() && !built_otherwise(s, &settings.vectors))
                        .rfind(|s| s.row_count() < settings.max_segment_points)
                        .cloned();
                    let fresh = target.is_none().then(|| {
                        st.next_segment_id += 1;
                        st.next_segment_id - 1
                    });
                    (src, target, fresh)
                }
                None => match self
                    .vacuum_candidate(&st)
                    .or_else(|| self.stale_candidate(&st))
                {
                    Some(src) => {
                        st.next_segment_id += 1;
                        (src, None, Some(st.next_segment_id - 1))
                    }
                    None => match self.merge_candidate(&st) {
                        Some((src, target)) => (src, Some(target), None),
                        None => return Ok(false),
                    },
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
            // Rows in order: vectors left on disk are read far ahead, not page by page.
            src.vectors_read_in_order(true);
            let vectors = (0..self.settings().vectors.len())
                .map(|c| moving.iter().map(|&(r, _)| src.vector(c, r)).collect())
                .collect();
            src.vectors_read_in_order(false);
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
        if !moving.is_empty() {
            pool.install(|| -> Result<()> {
                for (c, graph) in graphs.iter().enumerate() {
                    graph.insert_batch(base, &vectors[c])?;
                    graph.finish_batch()?;
                }
                Ok(())
            })?;
        }
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
            self.map_on_disk(&target);
        }
        // The move changed the state without a new operation: checkpoint regardless.
        self.write_checkpoint(true, log)?;
        Ok(true)
    }

    /// Holds the optimizer between steps while the guard lives: a snapshot needs the files of
    /// a checkpoint to stay put until it has linked them aside.
    pub fn pause_optimizer(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.optimizing.lock()
    }

    /// Writes a segment's graphs as a new generation of files.
    pub(super) fn save_graphs(&self, segment: &Segment) -> Result<()> {
        let SegmentVectors::Indexed { graphs, .. } = &segment.vectors else {
            return Ok(());
        };
        let _files = self.files.lock();
        let rows = segment.row_count();
        let generation = segment.generation() + 1;
        for (c, graph) in graphs.iter().enumerate() {
            if let Err(e) = graph.save(&self.graph_path(segment.id, generation, c)) {
                // No checkpoint names this generation yet: its files, whole or part written,
                // go now rather than at the next checkpoint, which a full disk (the usual
                // cause) would hold off while they keep the space it needs.
                for c in 0..=c {
                    let _ = std::fs::remove_file(self.graph_path(segment.id, generation, c));
                }
                return Err(e.into());
            }
        }
        segment.set_saved_rows(rows);
        segment.set_generation(generation);
        Ok(())
    }

    /// Writes every graph with rows not yet in its files, then a checkpoint: what a clean
    /// shutdown does, so the next start loads graphs instead of re-indexing inline rows.
    pub fn save_all(&self, log: &Wal) -> Result<()> {
        let _one = self.optimizing.lock();
        let segments: Vec<Arc<Segment>> = self.state.read().segments.clone();
        for s in segments
            .iter()
            .filter(|s| s.is_indexed() && s.row_count() > s.saved_rows())
        {
            self.save_graphs(s)?;
        }
        self.write_checkpoint(true, log).map(|_| ())
    }

    /// Serves the full vectors of `segment`'s columns configured `on_disk` from the graph
    /// files just written, as a restart would: each such graph is loaded again from its file
    /// with its vectors left in the file map, and the segment is replaced by one over the
    /// loaded graphs under the write lock (which waits for the searches using the old one).
    /// Without this, vectors asked to be on disk stayed in RAM until the next restart. Called
    /// by the optimizer only (no insert runs meanwhile), after `save_graphs`, so the files hold
    /// every row of the graphs. A file that cannot be loaded back leaves the graphs in RAM,
    /// with a warning: nothing is wrong with the data.
    pub(super) fn map_on_disk(&self, segment: &Arc<Segment>) {
        let settings = self.settings();
        let SegmentVectors::Indexed { graphs, .. } = &segment.vectors else {
            return;
        };
        let generation = segment.generation();
        let mut mapped = false;
        let mut loaded = Vec::with_capacity(graphs.len());
        for (c, graph) in graphs.iter().enumerate() {
            let Some(v) = settings.vectors.get(c) else {
                return;
            };
            if v.on_disk && graph.maps_full_vectors() {
                let file = self.graph_path(segment.id, generation, c);
                match SegmentIndex::load(&file, IndexKind::Hnsw, true) {
                    Ok(graph) => {
                        loaded.push(Arc::new(graph));
                        mapped = true;
                    }
                    Err(e) => {
                        tracing::warn!(
                            shard = self.id,
                            file = %file.display(),
                            error = %e,
                            "the graph's vectors stay in RAM: its file could not be mapped"
                        );
                        return;
                    }
                }
            } else {
                loaded.push(graph.clone());
            }
        }
        if !mapped {
            return;
        }
        let mut st = self.state.write();
        let Some(at) = st.segments.iter().position(|s| Arc::ptr_eq(s, segment)) else {
            return;
        };
        let replacement = Arc::new(segment.moved_to_graphs(loaded));
        st.segments[at] = replacement.clone();
        for e in st.points.values_mut() {
            if Arc::ptr_eq(&e.seg, segment) {
                e.seg = replacement.clone();
            }
        }
    }

    pub(super) fn new_graphs(&self, vectors: &[ColumnCopy]) -> Result<Vec<SegmentIndex>> {
        self.settings()
            .vectors
            .iter()
            .zip(vectors)
            .map(|(v, column)| self.new_graph(v, column))
            .collect()
    }

    /// An index for vector `v`, its quantizer (if any) trained on `column`; one with too few
    /// vectors to train on stores full precision until a rebuild.
    pub(super) fn new_graph(
        &self,
        v: &EffectiveVector,
        column: &ColumnCopy,
    ) -> Result<SegmentIndex> {
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
        if let Some(cagra) = &v.cagra {
            let config = gpu_cagra::CagraConfig {
                seed: cagra.seed ^ self.id as u64,
                ..cagra.clone()
            };
            return Ok(SegmentIndex::Cagra(CagraSegment::new(
                v.dim, metric, config,
            )?));
        }
        let config = HnswConfig {
            seed: 0x5eed ^ self.id as u64,
            ..v.hnsw.clone()
        };
        if config.storage.is_quantized() {
            let sample = sample();
            if sample.len() / v.dim.max(1) >= config.storage.min_training_vectors() {
                return Ok(SegmentIndex::Hnsw(HnswIndex::with_training(
                    v.dim, metric, config, &sample,
                )?));
            }
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
    }

    pub(super) fn extension(&self, column: usize) -> &'static str {
        IndexKind::of(&self.settings().vectors[column]).extension()
    }

    pub(super) fn graph_path(&self, segment: u64, generation: u64, column: usize) -> PathBuf {
        self.graph_file(
            segment,
            generation,
            column,
            IndexKind::of(&self.settings().vectors[column]),
        )
    }

    /// The file of one graph of an indexed segment, of the index family `kind`.
    pub(super) fn graph_file(
        &self,
        segment: u64,
        generation: u64,
        column: usize,
        kind: IndexKind,
    ) -> PathBuf {
        self.dir.join(format!(
            "seg-{segment}-{generation}-{column}.{}",
            kind.extension()
        ))
    }
}

/// Whether some graph of an indexed segment was built with HNSW or quantization settings
/// other than `vectors` ask for. A graph of too few vectors to train the asked quantizer on
/// was built at full precision on purpose, and is not rebuilt for that (its rebuild would
/// come out the same).
fn built_otherwise(segment: &Segment, vectors: &[EffectiveVector]) -> bool {
    let SegmentVectors::Indexed { graphs, .. } = &segment.vectors else {
        return false;
    };
    graphs.iter().zip(vectors).any(|(graph, v)| {
        if let (SegmentIndex::Cagra(c), Some(want)) = (&**graph, &v.cagra) {
            // Each segment's seed is the configured one mixed with its id.
            let unseeded = |c: &gpu_cagra::CagraConfig| gpu_cagra::CagraConfig {
                seed: 0,
                ..c.clone()
            };
            return unseeded(c.config()) != unseeded(want);
        }
        let SegmentIndex::Hnsw(h) = &**graph else {
            return false;
        };
        let (have, want) = (h.config(), &v.hnsw);
        let untrainable = have.storage == StorageKind::F32
            && want.storage.is_quantized()
            && index_core::VectorIndex::len(h) < want.storage.min_training_vectors();
        (have.storage != want.storage && !untrainable)
            || have.m != want.m
            || (want.has_graph() && have.ef_construct != want.ef_construct)
            || (have.storage == StorageKind::Pq
                && have.pq_subspaces_for(v.dim) != want.pq_subspaces_for(v.dim))
            || (have.storage == StorageKind::Sq8 && have.quantile != want.quantile)
            || (have.storage == StorageKind::Rabitq && have.rabitq_bits != want.rabitq_bits)
    })
}
