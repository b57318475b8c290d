//! Saving an index to one file and loading it back.
//!
//! Layout (little-endian), in the workspace's common frame (`persist`):
//!
//! | field | size |
//! |---|---|
//! | magic `b"VRCAGRA\0"` | 8 |
//! | format version ([`FORMAT_VERSION`]) | 4 |
//! | dim, metric tag | 4 + 4 |
//! | configuration as JSON: length, bytes | 8 + n |
//! | nodes `n`, graph degree, center node | 8 + 4 + 4 |
//! | entry points: count, `u32` each | 8 + 4·e |
//! | deleted offsets: count, `u32` each | 8 + 4·d |
//! | graph: `n · degree` `u32` | 4·n·degree |
//! | vectors (prepared): `n · dim` `f32` | 4·n·dim |
//! | storage tag (1 `f32`, 2 SQ8) | 4 |
//! | SQ8 only: quantizer length and bytes, codes length and bytes (each in `quant`'s framed format) | 8 + q + 8 + c |
//! | CRC-32 (IEEE) of everything above | 4 |
//!
//! The loader checks the magic, version and checksum before it trusts a single field, then
//! every count against what is left, every link against `n`, and that each node has
//! `degree` distinct links and none to itself.

use crate::config::{CagraConfig, CagraStorage};
use crate::index::{CagraIndex, Vectors};
use index_core::{IndexError, Result};
use persist::Cursor;
use quant::{Metric, ScalarCodes, ScalarQuantizer};
use std::io::Write;
use std::path::Path;

/// The magic bytes that open an index file.
pub const MAGIC: [u8; 8] = *b"VRCAGRA\0";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

impl CagraIndex {
    /// Saves the index to `path` (a temporary file beside it, synced, then renamed: a crash
    /// leaves the old file or the new one).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        persist::replace_file(path.as_ref(), |file| self.write_into(file))?;
        Ok(())
    }

    /// Writes the file's bytes (see the module doc) to `file`, the checksum last: what
    /// [`CagraIndex::save`] writes, for a caller that frames the index inside a file of its
    /// own.
    pub fn write_into(&self, file: &mut impl Write) -> std::io::Result<()> {
        let mut out = persist::ChecksumWriter::new(file);
        out.write_all(&MAGIC)?;
        out.u32(FORMAT_VERSION)?;
        out.u32(self.dim as u32)?;
        out.u32(self.metric.tag())?;
        let config = serde_json::to_vec(&self.config).map_err(std::io::Error::other)?;
        out.u64(config.len() as u64)?;
        out.write_all(&config)?;
        out.u64(self.n as u64)?;
        out.u32(self.degree as u32)?;
        out.u32(self.center)?;
        out.counted_u32s(self.entries.iter().copied())?;
        out.counted_u32s(self.deleted().iter())?;
        out.write_all(bytemuck::cast_slice(&self.graph))?;
        out.f32s(self.vectors.full())?;
        match &self.vectors {
            Vectors::F32(_) => out.u32(1)?,
            Vectors::Sq8 { sq, codes, .. } => {
                out.u32(2)?;
                let mut blob = Vec::new();
                sq.write_to(&mut blob).map_err(std::io::Error::other)?;
                out.u64(blob.len() as u64)?;
                out.write_all(&blob)?;
                let mut blob = Vec::new();
                codes.write_to(&mut blob).map_err(std::io::Error::other)?;
                out.u64(blob.len() as u64)?;
                out.write_all(&blob)?;
            }
        }
        out.finish()?;
        Ok(())
    }

    /// Loads an index saved by [`CagraIndex::save`]; a damaged, foreign or other-version file
    /// is refused with [`IndexError::Corrupt`] naming it.
    pub fn load(path: impl AsRef<Path>) -> Result<CagraIndex> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Reads an index from the bytes [`CagraIndex::write_into`] wrote; errors name `origin`.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<CagraIndex> {
        let corrupt = |reason: String| IndexError::Corrupt {
            path: origin.to_string(),
            reason,
        };
        let body = persist::check_frame(bytes, &MAGIC, FORMAT_VERSION).map_err(|e| match e {
            persist::FrameError::BadMagic => corrupt("not a CAGRA index file (bad magic)".into()),
            e => corrupt(e.to_string()),
        })?;
        let mut r = Cursor::new(body, 12);
        let short = || corrupt("file ends early".into());
        let dim = r.u32().ok_or_else(short)? as usize;
        let tag = r.u32().ok_or_else(short)?;
        let metric =
            Metric::from_tag(tag).ok_or_else(|| corrupt(format!("unknown metric tag {tag}")))?;
        let config_len = r.len(1).ok_or_else(short)?;
        let config: CagraConfig = serde_json::from_slice(r.bytes(config_len).ok_or_else(short)?)
            .map_err(|e| corrupt(format!("configuration: {e}")))?;
        config
            .validate()
            .map_err(|e| corrupt(format!("configuration: {e}")))?;
        let n = r.u64().ok_or_else(short)? as usize;
        let degree = r.u32().ok_or_else(short)? as usize;
        let center = r.u32().ok_or_else(short)?;
        // Before any per-link work: a degree the configuration does not have is damage.
        if degree != config.graph_degree {
            return Err(corrupt(format!(
                "degree {degree}, the configuration's is {}",
                config.graph_degree
            )));
        }
        if dim == 0 || dim > quant::MAX_DIMENSION || degree == 0 || n <= degree {
            return Err(corrupt(format!(
                "dimension {dim}, {n} nodes of degree {degree}"
            )));
        }
        if center as usize >= n {
            return Err(corrupt(format!("center {center} past {n} nodes")));
        }
        let entry_count = r.len(4).ok_or_else(short)?;
        let entries = r.u32s(entry_count).ok_or_else(short)?;
        if let Some(bad) = entries.iter().find(|&&e| e as usize >= n) {
            return Err(corrupt(format!("entry point {bad} past {n} nodes")));
        }
        let deleted_count = r.len(4).ok_or_else(short)?;
        let deleted = r.u32s(deleted_count).ok_or_else(short)?;
        let graph_len = n.checked_mul(degree).ok_or_else(short)?;
        if r.remaining() < graph_len.saturating_mul(4) {
            return Err(short());
        }
        let graph = r.u32s(graph_len).ok_or_else(short)?;
        for (node, row) in graph.chunks_exact(degree).enumerate() {
            for (i, &b) in row.iter().enumerate() {
                if b as usize >= n || b as usize == node || row[..i].contains(&b) {
                    return Err(corrupt(format!(
                        "node {node}: link {b} is past the nodes, a self-loop or repeated"
                    )));
                }
            }
        }
        let vector_len = n.checked_mul(dim).ok_or_else(short)?;
        if r.remaining() < vector_len.saturating_mul(4) {
            return Err(short());
        }
        let full = r.f32s(vector_len).ok_or_else(short)?;
        let vectors = match r.u32().ok_or_else(short)? {
            1 => Vectors::F32(full),
            2 => {
                let q_len = r.len(1).ok_or_else(short)?;
                let sq = ScalarQuantizer::read_from(&mut r.bytes(q_len).ok_or_else(short)?)
                    .map_err(|e| corrupt(format!("quantizer: {e}")))?;
                if sq.dim() != dim {
                    return Err(corrupt(format!("quantizer of dimension {}", sq.dim())));
                }
                let c_len = r.len(1).ok_or_else(short)?;
                let codes = ScalarCodes::read_from(&mut r.bytes(c_len).ok_or_else(short)?)
                    .map_err(|e| corrupt(format!("codes: {e}")))?;
                if codes.dim() != dim || codes.len() != n {
                    return Err(corrupt(format!(
                        "{} codes of dimension {} for {n} nodes",
                        codes.len(),
                        codes.dim()
                    )));
                }
                Vectors::Sq8 { sq, codes, full }
            }
            t => return Err(corrupt(format!("unknown storage tag {t}"))),
        };
        let storage = match vectors {
            Vectors::F32(_) => CagraStorage::F32,
            Vectors::Sq8 { .. } => CagraStorage::Sq8,
        };
        if storage != config.storage || degree != config.graph_degree {
            return Err(corrupt(
                "storage or degree differs from the configuration".into(),
            ));
        }
        if r.remaining() != 0 {
            return Err(corrupt(format!("{} bytes past the end", r.remaining())));
        }
        let index = CagraIndex::assemble(dim, metric, config, graph, vectors, center, entries);
        for o in deleted {
            if o as usize >= n {
                return Err(corrupt(format!("deleted offset {o} past {n} nodes")));
            }
            index.delete(o)?;
        }
        Ok(index)
    }
}
