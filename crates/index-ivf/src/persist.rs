//! Saving an index to one file and loading it back.
//!
//! Layout (little-endian):
//!
//! | field | size |
//! |---|---|
//! | magic `b"VRIVF\0\0\0"` | 8 |
//! | format version ([`FORMAT_VERSION`]) | 4 |
//! | dim, metric tag | 4 + 4 |
//! | configuration as JSON: length, bytes | 8 + n |
//! | trained (0 or 1) | 4 |
//! | if trained: nlist, centroids (`nlist · dim` `f32`) | 8 + 4·nlist·dim |
//! | if trained: encoding tag, quantizer length, quantizer (`quant`'s framed format for SQ8, PQ and RaBitQ; `m` then codebooks for fast scan) | 4 + 8 + n |
//! | end (one past the highest offset held) | 8 |
//! | live offsets: count, `u32` each | 8 + 4·n |
//! | offsets present in lists: count, `u32` each | 8 + 4·n |
//! | per list: entry count, ids (`u32`), code length and bytes, float count and `f32`s | … |
//! | full vectors: slot count, zero padding to a multiple of 64 bytes, `slots · dim` `f32` | … |
//! | CRC-32 (IEEE) of everything above | 4 |
//!
//! List floats are the flat vectors (row after row; for inner product and cosine in panels of
//! 16 stored transposed, then the last `n % 16` row after row), for Euclidean the norms of
//! 8-bit codes, or three factors per RaBitQ code.
//!
//! The loader maps the file and checks the magic, version and checksum before it trusts a
//! single field, then every count against what is left. With
//! [`LoadOptions::vectors_on_disk`] the full vectors stay in the map (the 64-byte alignment
//! lets them be read in place), so only codes, ids and centroids take RAM.

use crate::coarse::Coarse;
use crate::config::{IvfConfig, ListEncoding};
use crate::fastscan::Pq4;
use crate::index::{IvfIndex, Model, State};
use crate::lists::{Codec, InvertedList};
use crate::mapped::{map_file, FullVectors};
use index_core::{AllowedSet, IndexError, Result};
use persist::Cursor;
use quant::kernels::PQ4_KSUB;
use quant::{Metric, ProductQuantizer, RabitqQuantizer, ScalarQuantizer};
use std::io::Write;
use std::path::Path;

/// The magic bytes that open an index file.
pub const MAGIC: [u8; 8] = *b"VRIVF\0\0\0";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// How [`IvfIndex::load`] places what it reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Leave the full-precision vectors kept for re-ranking in the file map instead of RAM.
    pub vectors_on_disk: bool,
}

impl IvfIndex {
    /// Saves the index to `path` (written to a temporary file beside it, synced, then renamed,
    /// so a crash leaves either the old file or the new one). Writes wait for the save.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        persist::replace_file(path.as_ref(), |file| self.write_to(file))?;
        Ok(())
    }

    /// Writes the file's bytes (see the module doc), the checksum last.
    fn write_to(&self, file: &mut impl Write) -> std::io::Result<()> {
        let mut out = persist::ChecksumWriter::new(file);
        let state = self.read();
        out.write_all(&MAGIC)?;
        out.u32(FORMAT_VERSION)?;
        out.u32(self.dim as u32)?;
        out.u32(self.metric.tag())?;
        let config = serde_json::to_vec(&self.config).map_err(std::io::Error::other)?;
        out.u64(config.len() as u64)?;
        out.write_all(&config)?;
        out.u32(self.model.is_some() as u32)?;
        if let Some(model) = &self.model {
            out.u64(model.coarse.nlist() as u64)?;
            out.f32s(&model.coarse.centroids)?;
            let mut blob = Vec::new();
            match &model.codec {
                Codec::Flat | Codec::FlatPanels => {}
                Codec::Sq8 { sq, .. } => sq.write_to(&mut blob).map_err(std::io::Error::other)?,
                Codec::Pq(pq) => pq.write_to(&mut blob).map_err(std::io::Error::other)?,
                Codec::Rabitq(rq) => rq.write_to(&mut blob).map_err(std::io::Error::other)?,
                Codec::Pq4(pq) => {
                    blob.extend_from_slice(&(pq.m() as u64).to_le_bytes());
                    blob.extend(pq.codebooks().iter().flat_map(|x| x.to_le_bytes()));
                }
            }
            out.u32(self.config.encoding.tag())?;
            out.u64(blob.len() as u64)?;
            out.write_all(&blob)?;
        }
        out.u64(state.end as u64)?;
        out.counted_u32s(state.live.iter())?;
        out.counted_u32s(state.present.iter())?;
        for list in &state.lists {
            out.counted_u32s(list.ids.iter().copied())?;
            out.u64(list.codes.len() as u64)?;
            out.write_all(&list.codes)?;
            out.u64(list.floats.len() as u64)?;
            out.f32s(&list.floats)?;
        }
        let full = state.full.as_slice(self.dim);
        out.u64((full.len() / self.dim) as u64)?;
        let pad = (64 - out.written() % 64) % 64;
        out.write_all(&vec![0u8; pad as usize])?;
        // Vectors left on disk are read in order here: read ahead while the pass lasts, then
        // unmap what it mapped in.
        state.full.advise(true, self.dim);
        let written = out.f32s(full);
        state.full.advise(false, self.dim);
        state.full.release(self.dim);
        written?;
        out.finish()?;
        Ok(())
    }

    /// Loads an index saved by [`IvfIndex::save`]; a damaged, foreign or other-version file is
    /// refused with [`IndexError::Corrupt`] naming it.
    pub fn load(path: impl AsRef<Path>, options: LoadOptions) -> Result<IvfIndex> {
        let path = path.as_ref();
        let corrupt = |reason: String| IndexError::Corrupt {
            path: path.display().to_string(),
            reason,
        };
        let file = std::fs::File::open(path)?;
        let map = map_file(&file)?;
        let body = persist::check_frame(&map, &MAGIC, FORMAT_VERSION).map_err(|e| match e {
            persist::FrameError::BadMagic => corrupt("not an IVF index file (bad magic)".into()),
            e => corrupt(e.to_string()),
        })?;
        let mut r = Cursor::new(body, 12);
        let bad = |what: &str| corrupt(what.to_string());
        let dim = r.u32().ok_or_else(|| bad("file ends early"))? as usize;
        let tag = r.u32().ok_or_else(|| bad("file ends early"))?;
        let metric = Metric::from_tag(tag).ok_or_else(|| bad("unknown metric"))?;
        let config_len = r.len(1).ok_or_else(|| bad("bad configuration length"))?;
        let config: IvfConfig = serde_json::from_slice(r.bytes(config_len).expect("checked"))
            .map_err(|e| corrupt(format!("configuration: {e}")))?;
        let mut index = IvfIndex::new(dim, metric, config).map_err(|e| corrupt(e.to_string()))?;
        let ends = || bad("file ends early");
        let model = match r.u32().ok_or_else(ends)? {
            0 => None,
            1 => {
                let nlist = r.len(4 * dim).ok_or_else(ends)?;
                let centroids = r.f32s(nlist * dim).ok_or_else(ends)?;
                if nlist == 0 || centroids.iter().any(|x| !x.is_finite()) {
                    return Err(bad("bad centroids"));
                }
                let tag = r.u32().ok_or_else(ends)?;
                if tag != index.config.encoding.tag() {
                    return Err(bad("encoding does not match the configuration"));
                }
                let blob_len = r.len(1).ok_or_else(ends)?;
                let mut blob = r.bytes(blob_len).expect("checked");
                let codec = match index.config.encoding {
                    ListEncoding::Flat => Codec::flat(metric),
                    ListEncoding::Sq8 => {
                        let sq = ScalarQuantizer::read_from(&mut blob)?;
                        if sq.dim() != dim {
                            return Err(bad("scalar quantizer does not match"));
                        }
                        Codec::Sq8 {
                            sq,
                            norms: metric == Metric::Euclidean,
                        }
                    }
                    ListEncoding::Pq { m } => {
                        let pq = ProductQuantizer::read_from(&mut blob)?;
                        if pq.m() != m || pq.dim() != dim {
                            return Err(bad("product quantizer does not match"));
                        }
                        Codec::Pq(pq)
                    }
                    ListEncoding::PqFastScan { m } => {
                        let mut b = Cursor::new(blob, 0);
                        let stored_m = b.u64().ok_or_else(ends)? as usize;
                        let books = b.f32s(dim * PQ4_KSUB).ok_or_else(ends)?;
                        let pq = Pq4::from_parts(dim, stored_m, books)
                            .filter(|p| p.m() == m)
                            .ok_or_else(|| bad("4-bit codebooks do not match"))?;
                        Codec::Pq4(pq)
                    }
                    ListEncoding::Rabitq { bits } => {
                        let rq = RabitqQuantizer::read_from(&mut blob)?;
                        if rq.dim() != dim
                            || rq.bits() != bits
                            || rq.centroid().iter().any(|&c| c != 0.0)
                        {
                            return Err(bad("RaBitQ quantizer does not match"));
                        }
                        Codec::Rabitq(rq)
                    }
                };
                Some(Model {
                    coarse: Coarse::new(centroids, dim, metric),
                    codec,
                })
            }
            _ => return Err(bad("bad trained flag")),
        };
        let end = r.u64().ok_or_else(ends)? as usize;
        if end > u32::MAX as usize {
            return Err(bad("end offset out of range"));
        }
        let offsets = |r: &mut Cursor<'_>| -> Result<AllowedSet> {
            let n = r.len(4).ok_or_else(ends)?;
            // Grown by the offsets the file holds, not sized by `end` from its header: a
            // crafted file saying four billion with no offsets asked for 512 MB twice.
            let mut set = AllowedSet::default();
            for _ in 0..n {
                let o = r.u32().expect("length checked");
                if o as usize >= end {
                    return Err(bad("offset beyond the end"));
                }
                set.insert(o);
            }
            Ok(set)
        };
        let live = offsets(&mut r)?;
        let present = offsets(&mut r)?;
        if live.iter().any(|o| !present.contains(o)) {
            return Err(bad("a live offset is in no list"));
        }
        let nlist = model.as_ref().map_or(0, |m| m.coarse.nlist());
        let mut lists = Vec::with_capacity(nlist);
        let mut entries = 0usize;
        for _ in 0..nlist {
            let codec = &model.as_ref().expect("nlist > 0 only when trained").codec;
            let n = r.len(4).ok_or_else(ends)?;
            let ids: Vec<u32> = (0..n).map(|_| r.u32().expect("checked")).collect();
            let code_bytes = r.len(1).ok_or_else(ends)?;
            let codes = r.bytes(code_bytes).expect("checked").to_vec();
            let float_count = r.len(4).ok_or_else(ends)?;
            let floats = r.f32s(float_count).expect("checked");
            if codes.len() != codec.codes_for(n, dim)
                || floats.len() != codec.floats_for(n, dim)
                || ids.iter().any(|&o| !present.contains(o))
            {
                return Err(bad("a list does not match its entry count"));
            }
            entries += n;
            lists.push(InvertedList { ids, codes, floats });
        }
        if entries != present.len() {
            return Err(bad("list entries do not match the offsets present"));
        }
        let slots = r.len(4 * dim).ok_or_else(ends)?;
        let start = r.position().next_multiple_of(64);
        r.seek(start);
        if start + slots * dim * 4 != body.len() {
            return Err(bad("file length does not match the vector count"));
        }
        let keeps = index.config.keeps_full_vectors() && model.is_some();
        // A kept store grows to cover every offset added, so it holds exactly `end` slots.
        if slots != if keeps { end } else { 0 } {
            return Err(bad("full vectors present where none are kept, or missing"));
        }
        let full = if !keeps {
            FullVectors::None
        } else if options.vectors_on_disk && slots > 0 {
            drop(file);
            FullVectors::mapped(map, start, slots, dim)
        } else {
            let mut reader = Cursor::new(body, start);
            FullVectors::Ram(reader.f32s(slots * dim).expect("length checked"))
        };
        index.model = model;
        *index.write() = State {
            lists,
            live,
            present,
            end,
            full,
        };
        Ok(index)
    }
}
