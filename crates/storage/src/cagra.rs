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
//! intermediate degree) stay a tail. A row without this vector takes another row's vector as
//! a placeholder in the graph and is deleted there: a waypoint, never a result.
//!
//! File layout (little-endian, the workspace's common frame):
//!
//! | field | size |
//! |---|---|
//! | magic `b"VRCAGSEG"`, format version ([`FORMAT_VERSION`]) | 8 + 4 |
//! | dim, metric tag | 4 + 4 |
//! | configuration as JSON: length, bytes | 8 + n |
//! | graph: length (0 for none), then `gpu_cagra`'s own file bytes | 8 + g |
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

fn metric_tag(m: Metric) -> u32 {
    match m {
        Metric::Euclidean => 1,
        Metric::InnerProduct => 2,
        Metric::Cosine => 3,
        Metric::Manhattan => 4,
    }
}

#[derive(Default)]
struct State {
    /// The graph over offsets `0 .. graph.size()`.
    graph: Option<Arc<CagraIndex>>,
    /// Rows inserted since the graph was built: offset to prepared vector.
    tail: BTreeMap<u32, Vec<f32>>,
}

impl State {
    fn graph_len(&self) -> u32 {
        self.graph.as_ref().map_or(0, |g| g.size() as u32)
    }
}

/// CAGRA and its tail of recent rows, for one vector of an indexed segment.
pub(crate) struct CagraSegment {
    dim: usize,
    metric: Metric,
    config: CagraConfig,
    state: RwLock<State>,
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
        })
    }

    pub(crate) fn config(&self) -> &CagraConfig {
        &self.config
    }

    pub(crate) fn contains(&self, offset: PointOffset) -> bool {
        let state = self.state.read();
        match &state.graph {
            Some(g) if offset < state.graph_len() => g.contains(offset),
            _ => state.tail.contains_key(&offset),
        }
    }

    /// The stored vector (prepared for the metric).
    pub(crate) fn vector(&self, offset: PointOffset) -> Option<Vec<f32>> {
        let state = self.state.read();
        match &state.graph {
            Some(g) if offset < state.graph_len() => g
                .contains(offset)
                .then(|| g.stored_vector(offset).map(<[f32]>::to_vec))
                .flatten(),
            _ => state.tail.get(&offset).cloned(),
        }
    }

    /// Adds a row to the tail; offsets are written once.
    pub(crate) fn insert(&self, offset: PointOffset, vector: &[f32]) -> Result<()> {
        let v = prepared_vector(vector, self.dim, self.metric)?;
        let mut state = self.state.write();
        if offset < state.graph_len() || state.tail.contains_key(&offset) {
            return Err(IndexError::InvalidParameter {
                name: "offset",
                reason: format!("offset {offset} is already in use (offsets are written once)"),
            });
        }
        state.tail.insert(offset, v);
        Ok(())
    }

    /// After a batch of inserts: rebuilds the graph over every row when the tail has grown to
    /// a quarter of the graph (or there is no graph yet and enough rows for one).
    pub(crate) fn finish_batch(&self) -> Result<()> {
        let (graph, tail, end) = {
            let state = self.state.read();
            let graph_len = state.graph_len() as usize;
            let end = state
                .tail
                .keys()
                .next_back()
                .map_or(graph_len, |&o| graph_len.max(o as usize + 1));
            let enough = end >= MIN_GRAPH_FACTOR * self.config.intermediate_graph_degree;
            if !enough || state.tail.len() * 4 < graph_len.max(1) {
                return Ok(());
            }
            (state.graph.clone(), state.tail.clone(), end)
        };
        let graph_len = graph.as_ref().map_or(0, |g| g.size());
        let row = |o: usize| -> Option<&[f32]> {
            match &graph {
                Some(g) if o < graph_len => g
                    .contains(o as u32)
                    .then(|| g.stored_vector(o as u32))
                    .flatten(),
                _ => tail.get(&(o as u32)).map(Vec::as_slice),
            }
        };
        let Some(placeholder) = (0..end).find_map(row).map(<[f32]>::to_vec) else {
            return Ok(());
        };
        let mut data = Vec::with_capacity(end * self.dim);
        let mut missing = Vec::new();
        for o in 0..end {
            match row(o) {
                Some(v) => data.extend_from_slice(v),
                None => {
                    data.extend_from_slice(&placeholder);
                    missing.push(o as u32);
                }
            }
        }
        let index = CagraIndex::build(self.dim, self.metric, self.config.clone(), &data)?;
        for o in missing {
            index.delete(o)?;
        }
        let mut state = self.state.write();
        state.graph = Some(Arc::new(index));
        state.tail.retain(|&o, _| o as usize >= end);
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
        let (graph, tail_hits) = {
            let state = self.state.read();
            let mut top = TopK::new(params.limit);
            let kern = kernels();
            for (&o, v) in &state.tail {
                if filter.is_none_or(|f| f.allows(o)) {
                    top.push(ScoredOffset::new(o, self.metric.distance(kern, &q, v)));
                }
            }
            (state.graph.clone(), top.into_sorted_vec())
        };
        let mut lists = vec![tail_hits];
        if let Some(g) = graph {
            lists.push(g.search(query, params, filter)?);
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
        out.u32(metric_tag(self.metric))?;
        let config = serde_json::to_vec(&self.config).map_err(std::io::Error::other)?;
        out.u64(config.len() as u64)?;
        out.write_all(&config)?;
        let mut graph = Vec::new();
        if let Some(g) = &state.graph {
            g.write_into(&mut graph)?;
        }
        out.u64(graph.len() as u64)?;
        out.write_all(&graph)?;
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
        let tag = r.u32().ok_or_else(short)?;
        let metric = Metric::ALL
            .into_iter()
            .find(|&m| metric_tag(m) == tag)
            .ok_or_else(|| corrupt(format!("unknown metric tag {tag}")))?;
        let config_len = r.len(1).ok_or_else(short)?;
        let config: CagraConfig = serde_json::from_slice(r.bytes(config_len).ok_or_else(short)?)
            .map_err(|e| corrupt(format!("configuration: {e}")))?;
        let graph_len = r.len(1).ok_or_else(short)?;
        let graph = if graph_len == 0 {
            None
        } else {
            let g = CagraIndex::from_bytes(r.bytes(graph_len).ok_or_else(short)?, &origin)?;
            if g.dim() != dim || g.metric() != metric {
                return Err(corrupt("the graph's dimension or metric differs".into()));
            }
            Some(Arc::new(g))
        };
        let count = r.len(4 + 4 * dim).ok_or_else(short)?;
        let mut tail = BTreeMap::new();
        for _ in 0..count {
            let o = r.u32().ok_or_else(short)?;
            tail.insert(o, r.f32s(dim).ok_or_else(short)?);
        }
        if r.remaining() != 0 {
            return Err(corrupt(format!("{} bytes past the end", r.remaining())));
        }
        let segment = CagraSegment::new(dim, metric, config)
            .map_err(|e| corrupt(format!("configuration: {e}")))?;
        *segment.state.write() = State { graph, tail };
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

    #[test]
    fn rows_wait_in_the_tail_until_a_rebuild_takes_them_into_the_graph() {
        let seg = CagraSegment::new(4, Metric::Euclidean, config()).unwrap();
        // Offsets 0..1000 but 500..510, which lack the vector.
        for i in (0..1000).filter(|i| !(500..510).contains(i)) {
            seg.insert(i, &row(i)).unwrap();
        }
        seg.finish_batch().unwrap();
        let graph_len = |s: &CagraSegment| s.state.read().graph_len();
        assert_eq!(graph_len(&seg), 1000);
        assert!(seg.state.read().tail.is_empty());
        assert!(!seg.contains(505) && seg.contains(499) && seg.vector(505).is_none());
        assert_eq!(seg.vector(7), Some(row(7)));
        // Below a quarter of the graph, rows stay in the tail and are found there.
        for i in 1000..1100 {
            seg.insert(i, &row(i)).unwrap();
        }
        seg.finish_batch().unwrap();
        assert_eq!((graph_len(&seg), seg.state.read().tail.len()), (1000, 100));
        let params = SearchParams::top(1);
        for i in [3u32, 777, 1050] {
            let hits = seg.search(&row(i), &params, None).unwrap();
            assert_eq!((hits[0].offset, hits[0].distance), (i, 0.0), "row {i}");
        }
        assert!(seg.insert(1050, &row(1)).is_err() && seg.insert(3, &row(1)).is_err());
        // Saved and loaded with its tail.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.cagra");
        seg.save(&path).unwrap();
        let loaded = CagraSegment::load(&path).unwrap();
        assert_eq!(
            (graph_len(&loaded), loaded.state.read().tail.len()),
            (1000, 100)
        );
        assert_eq!(loaded.vector(1099), Some(row(1099)));
        // A quarter more: rebuilt over all of them.
        for i in 1100..1250 {
            seg.insert(i, &row(i)).unwrap();
        }
        seg.finish_batch().unwrap();
        assert_eq!((graph_len(&seg), seg.state.read().tail.len()), (1250, 0));
        let everything = |_: u32| true;
        for i in [505u32, 1200] {
            let hits = seg
                .search(&row(i), &SearchParams::top(5), Some(&everything))
                .unwrap();
            assert!(
                hits.iter().all(|h| !(500..510).contains(&h.offset)),
                "{hits:?}"
            );
        }
        assert_eq!(
            seg.search(&row(1200), &params, None).unwrap()[0].offset,
            1200
        );
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            CagraSegment::load(&path),
            Err(IndexError::Corrupt { .. })
        ));
    }
}
