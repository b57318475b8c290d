//! CAGRA over one vector of an indexed segment (`"index": {"type": "cagra", ...}`, an
//! extension like IVF).
//!
//! CAGRA optimises its graph as a whole and has no insert, while the optimizer fills an
//! indexed segment in batches (a fresh segment, or more rows appended to one below
//! `max_segment_points`). So rows arrive in a *tail* of exact vectors, searched by a scan,
//! and [`CagraSegment::finish_batch`] rebuilds the graph over every row once the tail holds a
//! quarter as many rows as the graph (or the segment has none yet): appends cost a rebuild
//! now and then, amortised like a vector's growth, and a search meets a graph plus a tail of
//! at most a fifth of the rows. Segments too small for a graph (`MIN_GRAPH_FACTOR` times the
//! intermediate degree) stay a tail. The graph holds only rows that have this vector: its
//! nodes map to segment offsets (identity when every row has one), and a search's filter is
//! asked about offsets and its results are given as offsets.
//!
//! File layout (little-endian, the workspace's common frame):
//!
//! | field | size |
//! |---|---|
//! | magic `b"VRCAGSEG"`, format version ([`FORMAT_VERSION`]) | 8 + 4 |
//! | dim, metric tag | 4 + 4 |
//! | configuration as JSON: length, bytes | 8 + n |
//! | graph: length (0 for none), then `gpu_cagra`'s own file bytes | 8 + g |
//! | segment offset of each graph node: count (0 for identity), `u32` each, increasing | 8 + 4·m |
//! | tail: count, then per row its offset (`u32`) and `dim` `f32`s (prepared) | 8 + … |
//! | CRC-32 (IEEE) of everything above | 4 |

use gpu_cagra::{CagraConfig, CagraIndex};
use index_core::{
    merge_top_k, prepared_vector, IndexError, MemoryUsage, PointFilter, PointOffset, Result,
    ScoredOffset, SearchParams, TopK, VectorIndex,
};
use parking_lot::RwLock;
use persist::Cursor;
use quant::{kernels, Metric};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// The magic bytes that open a segment's CAGRA file.
pub const MAGIC: [u8; 8] = *b"VRCAGSEG";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// A segment builds a graph from this many times `intermediate_graph_degree` rows: below, a
/// scan of its rows is about as fast as a walk.
const MIN_GRAPH_FACTOR: usize = 4;

#[derive(Default)]
struct State {
    /// The graph over the rows that had this vector when it was built.
    graph: Option<Arc<CagraIndex>>,
    /// The segment offset of each graph node, increasing; empty when node `i` is offset `i`.
    offsets: Vec<u32>,
    /// Rows inserted since the graph was built: offset to prepared vector.
    tail: BTreeMap<u32, Vec<f32>>,
}

impl State {
    /// Nodes in the graph.
    fn graph_len(&self) -> usize {
        self.graph.as_ref().map_or(0, |g| g.size())
    }

    /// The graph node of a segment offset, if the graph holds it.
    fn node_of(&self, offset: PointOffset) -> Option<u32> {
        if self.offsets.is_empty() {
            ((offset as usize) < self.graph_len()).then_some(offset)
        } else {
            self.offsets.binary_search(&offset).ok().map(|n| n as u32)
        }
    }

    fn offset_of(&self, node: u32) -> PointOffset {
        if self.offsets.is_empty() {
            node
        } else {
            self.offsets[node as usize]
        }
    }
}

/// A segment's filter seen from the graph: asked about a node, it answers for the node's
/// offset. It gives no count (a count of the segment's offsets would include the tail's):
/// the graph samples it; its listed offsets, for a scan of few passing rows, are mapped.
struct NodeFilter<'a> {
    filter: &'a dyn PointFilter,
    state: &'a State,
}

impl PointFilter for NodeFilter<'_> {
    fn allows(&self, node: PointOffset) -> bool {
        self.filter.allows(self.state.offset_of(node))
    }

    fn allowed_offsets(&self) -> Option<Box<dyn Iterator<Item = PointOffset> + '_>> {
        let offsets = self.filter.allowed_offsets()?;
        Some(Box::new(offsets.filter_map(|o| self.state.node_of(o))))
    }
}

/// CAGRA and its tail of recent rows, for one vector of an indexed segment.
pub(crate) struct CagraSegment {
    dim: usize,
    metric: Metric,
    config: CagraConfig,
    state: RwLock<State>,
    /// Held through a rebuild: one at a time, so that a slower one cannot replace a newer
    /// graph with an older one.
    building: parking_lot::Mutex<()>,
}

impl CagraSegment {
    /// An empty index.
    pub(crate) fn new(dim: usize, metric: Metric, config: CagraConfig) -> Result<CagraSegment> {
        config.validate()?;
        Ok(CagraSegment {
            dim,
            metric,
            config,
            state: RwLock::new(State::default()),
            building: parking_lot::Mutex::new(()),
        })
    }

    pub(crate) fn config(&self) -> &CagraConfig {
        &self.config
    }

    pub(crate) fn contains(&self, offset: PointOffset) -> bool {
        let state = self.state.read();
        match (&state.graph, state.node_of(offset)) {
            (Some(g), Some(node)) => g.contains(node),
            _ => state.tail.contains_key(&offset),
        }
    }

    /// The stored vector (prepared for the metric).
    pub(crate) fn vector(&self, offset: PointOffset) -> Option<Vec<f32>> {
        let state = self.state.read();
        match (&state.graph, state.node_of(offset)) {
            (Some(g), Some(node)) => g.stored_vector(node).map(<[f32]>::to_vec),
            _ => state.tail.get(&offset).cloned(),
        }
    }

    /// Adds a row to the tail; offsets are written once.
    pub(crate) fn insert(&self, offset: PointOffset, vector: &[f32]) -> Result<()> {
        let v = prepared_vector(vector, self.dim, self.metric)?;
        let mut state = self.state.write();
        if state.node_of(offset).is_some() || state.tail.contains_key(&offset) {
            return Err(IndexError::InvalidParameter {
                name: "offset",
                reason: format!("offset {offset} is already in use (offsets are written once)"),
            });
        }
        state.tail.insert(offset, v);
        Ok(())
    }

    /// After a batch of inserts: rebuilds the graph over every row when the tail has grown to
    /// a quarter of the graph (or there is no graph yet and enough rows for one). Rows
    /// inserted while it builds stay in the tail.
    pub(crate) fn finish_batch(&self) -> Result<()> {
        let _one = self.building.lock();
        let (graph, offsets, tail) = {
            let state = self.state.read();
            let graph_len = state.graph_len();
            let enough = graph_len + state.tail.len()
                >= MIN_GRAPH_FACTOR * self.config.intermediate_graph_degree;
            if !enough || state.tail.len() * 4 < graph_len.max(1) {
                return Ok(());
            }
            (
                state.graph.clone(),
                state.offsets.clone(),
                state.tail.clone(),
            )
        };
        // Every row, in offset order: the graph's nodes, then the tail's.
        let mut rows: Vec<(u32, &[f32])> = Vec::new();
        if let Some(g) = &graph {
            for node in 0..g.size() as u32 {
                let offset = if offsets.is_empty() {
                    node
                } else {
                    offsets[node as usize]
                };
                if let (true, Some(v)) = (g.contains(node), g.stored_vector(node)) {
                    rows.push((offset, v));
                }
            }
        }
        rows.extend(tail.iter().map(|(&o, v)| (o, v.as_slice())));
        rows.sort_unstable_by_key(|r| r.0);
        let mut data = Vec::with_capacity(rows.len() * self.dim);
        rows.iter().for_each(|(_, v)| data.extend_from_slice(v));
        let identity = rows.iter().enumerate().all(|(i, r)| r.0 as usize == i);
        let new_offsets = if identity {
            Vec::new()
        } else {
            rows.iter().map(|r| r.0).collect()
        };
        let index = CagraIndex::build(self.dim, self.metric, self.config.clone(), &data)?;
        let mut state = self.state.write();
        state.graph = Some(Arc::new(index));
        state.offsets = new_offsets;
        state.tail.retain(|o, _| !tail.contains_key(o));
        Ok(())
    }

    pub(crate) fn search(
        &self,
        query: &[f32],
        params: &SearchParams,
        filter: Option<&dyn PointFilter>,
    ) -> Result<Vec<ScoredOffset>> {
        params.validate()?;
        let q = prepared_vector(query, self.dim, self.metric)?;
        // One read of the state: the graph, its node offsets and the tail agree (a rebuild
        // replaces them together under the write lock).
        let state = self.state.read();
        let mut top = TopK::new(params.limit);
        let kern = kernels();
        for (&o, v) in &state.tail {
            if filter.is_none_or(|f| f.allows(o)) {
                top.push(ScoredOffset::new(o, self.metric.distance(kern, &q, v)));
            }
        }
        let mut lists = vec![top.into_sorted_vec()];
        if let Some(g) = &state.graph {
            let node_filter = filter.map(|filter| NodeFilter {
                filter,
                state: &state,
            });
            let hits = g.search(
                query,
                params,
                node_filter.as_ref().map(|f| f as &dyn PointFilter),
            )?;
            lists.push(
                hits.into_iter()
                    .map(|h| ScoredOffset::new(state.offset_of(h.offset), h.distance))
                    .collect(),
            );
        }
        let mut hits = merge_top_k(&lists, params.limit, |h| h.distance, |h| h.offset);
        if let Some(max) = params.max_distance {
            hits.retain(|h| h.distance <= max);
        }
        Ok(hits)
    }

    pub(crate) fn memory_usage(&self) -> MemoryUsage {
        let state = self.state.read();
        let mut usage = state
            .graph
            .as_ref()
            .map(|g| g.memory_usage())
            .unwrap_or_default();
        usage.points += state.tail.len();
        usage.vector_bytes += state.tail.len() * self.dim * 4;
        usage.other_bytes += state.offsets.capacity() * 4;
        usage
    }

    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        persist::replace_file(path, |file| self.write_into(file))?;
        Ok(())
    }

    fn write_into(&self, file: &mut impl Write) -> std::io::Result<()> {
        let state = self.state.read();
        let mut out = persist::ChecksumWriter::new(file);
        out.write_all(&MAGIC)?;
        out.u32(FORMAT_VERSION)?;
        out.u32(self.dim as u32)?;
        out.u32(self.metric.tag())?;
        let config = serde_json::to_vec(&self.config).map_err(std::io::Error::other)?;
        out.u64(config.len() as u64)?;
        out.write_all(&config)?;
        let mut graph = Vec::new();
        if let Some(g) = &state.graph {
            g.write_into(&mut graph)?;
        }
        out.u64(graph.len() as u64)?;
        out.write_all(&graph)?;
        out.counted_u32s(state.offsets.iter().copied())?;
        out.u64(state.tail.len() as u64)?;
        for (&o, v) in &state.tail {
            out.u32(o)?;
            out.f32s(v)?;
        }
        out.finish()?;
        Ok(())
    }

    pub(crate) fn load(path: &Path) -> Result<CagraSegment> {
        let origin = path.display().to_string();
        let corrupt = |reason: String| IndexError::Corrupt {
            path: origin.clone(),
            reason,
        };
        let bytes = std::fs::read(path)?;
        let body = persist::check_frame(&bytes, &MAGIC, FORMAT_VERSION)
            .map_err(|e| corrupt(format!("segment CAGRA file: {e}")))?;
        let mut r = Cursor::new(body, 12);
        let short = || corrupt("file ends early".into());
        let dim = r.u32().ok_or_else(short)? as usize;
        if dim == 0 || dim > quant::MAX_DIMENSION {
            return Err(corrupt(format!("dimension {dim}")));
        }
        let tag = r.u32().ok_or_else(short)?;
        let metric =
            Metric::from_tag(tag).ok_or_else(|| corrupt(format!("unknown metric tag {tag}")))?;
        let config_len = r.len(1).ok_or_else(short)?;
        let config: CagraConfig = serde_json::from_slice(r.bytes(config_len).ok_or_else(short)?)
            .map_err(|e| corrupt(format!("configuration: {e}")))?;
        let graph_len = r.len(1).ok_or_else(short)?;
        let graph = if graph_len == 0 {
            None
        } else {
            let g = CagraIndex::from_bytes(r.bytes(graph_len).ok_or_else(short)?, &origin)?;
            if g.dim() != dim || g.metric() != metric || g.config() != &config {
                return Err(corrupt(
                    "the graph's dimension, metric or configuration differs".into(),
                ));
            }
            Some(Arc::new(g))
        };
        let offset_count = r.len(4).ok_or_else(short)?;
        let offsets = r.u32s(offset_count).ok_or_else(short)?;
        let graph_len = graph.as_ref().map_or(0, |g| g.size());
        if !(offsets.is_empty() || offsets.len() == graph_len)
            || offsets.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(corrupt(format!(
                "{} node offsets for {graph_len} nodes, or not increasing",
                offsets.len()
            )));
        }
        let count = r.len(4 + 4 * dim).ok_or_else(short)?;
        let mut state = State {
            graph,
            offsets,
            tail: BTreeMap::new(),
        };
        for _ in 0..count {
            let o = r.u32().ok_or_else(short)?;
            if state.node_of(o).is_some() || state.tail.contains_key(&o) {
                return Err(corrupt(format!("tail row {o} is held twice")));
            }
            let v = r.f32s(dim).ok_or_else(short)?;
            state.tail.insert(o, v);
        }
        if r.remaining() != 0 {
            return Err(corrupt(format!("{} bytes past the end", r.remaining())));
        }
        let segment = CagraSegment::new(dim, metric, config)
            .map_err(|e| corrupt(format!("configuration: {e}")))?;
        *segment.state.write() = state;
        Ok(segment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u32) -> Vec<f32> {
        // Distinct 4-dimensional rows (7919 and 2003 are coprime).
        (0..4)
            .map(|d| ((i * 4 + d) * 7919 % 2003) as f32 / 2003.0)
            .collect()
    }

    fn config() -> CagraConfig {
        CagraConfig {
            intermediate_graph_degree: 16,
            graph_degree: 8,
            ..CagraConfig::default()
        }
    }

    fn sizes(s: &CagraSegment) -> (usize, usize) {
        let state = s.state.read();
        (state.graph_len(), state.tail.len())
    }

    #[test]
    fn rows_wait_in_the_tail_until_a_rebuild_takes_them_into_the_graph() {
        let seg = CagraSegment::new(4, Metric::Euclidean, config()).unwrap();
        // Offsets 0..1000 but 500..510, which lack the vector.
        for i in (0..1000).filter(|i| !(500..510).contains(i)) {
            seg.insert(i, &row(i)).unwrap();
        }
        seg.finish_batch().unwrap();
        // The graph holds the 990 rows that have the vector, mapped to their offsets.
        assert_eq!(sizes(&seg), (990, 0));
        assert_eq!(seg.state.read().offsets.len(), 990);
        assert!(!seg.contains(505) && seg.contains(499) && seg.vector(505).is_none());
        assert_eq!(seg.vector(777), Some(row(777)));
        // Below a quarter of the graph, rows stay in the tail and are found there.
        for i in 1000..1100 {
            seg.insert(i, &row(i)).unwrap();
        }
        seg.finish_batch().unwrap();
        assert_eq!(sizes(&seg), (990, 100));
        let params = SearchParams::top(1);
        for i in [3u32, 777, 1050] {
            let hits = seg.search(&row(i), &params, None).unwrap();
            assert_eq!((hits[0].offset, hits[0].distance), (i, 0.0), "row {i}");
        }
        assert!(seg.insert(1050, &row(1)).is_err() && seg.insert(3, &row(1)).is_err());
        // Saved and loaded with its tail and its node offsets.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.cagra");
        seg.save(&path).unwrap();
        let loaded = CagraSegment::load(&path).unwrap();
        assert_eq!(sizes(&loaded), (990, 100));
        assert_eq!(loaded.vector(1099), Some(row(1099)));
        assert_eq!(loaded.vector(777), Some(row(777)));
        assert!(loaded.vector(505).is_none());
        // A quarter more: rebuilt over all of them.
        for i in 1100..1250 {
            seg.insert(i, &row(i)).unwrap();
        }
        seg.finish_batch().unwrap();
        assert_eq!(sizes(&seg), (1240, 0));
        let everything = |_: u32| true;
        for i in [505u32, 1200] {
            let hits = seg
                .search(&row(i), &SearchParams::top(5), Some(&everything))
                .unwrap();
            assert_eq!(hits.len(), 5);
            assert!(
                hits.iter().all(|h| !(500..510).contains(&h.offset)),
                "{hits:?}"
            );
        }
        for i in [3u32, 511, 1200] {
            let hits = seg.search(&row(i), &params, None).unwrap();
            assert_eq!((hits[0].offset, hits[0].distance), (i, 0.0), "row {i}");
        }
        // A filter is asked about segment offsets, not graph nodes.
        let odd = |o: u32| o % 2 == 1;
        let hits = seg
            .search(&row(700), &SearchParams::top(10), Some(&odd))
            .unwrap();
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|h| h.offset % 2 == 1), "{hits:?}");
        let only: index_core::AllowedSet = [511u32, 1201].into_iter().collect();
        let hits = seg
            .search(&row(700), &SearchParams::top(10), Some(&only))
            .unwrap();
        let mut got: Vec<u32> = hits.iter().map(|h| h.offset).collect();
        got.sort_unstable();
        assert_eq!(got, vec![511, 1201]);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            CagraSegment::load(&path),
            Err(IndexError::Corrupt { .. })
        ));
    }
}
