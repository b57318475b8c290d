//! Saving an index to one file and loading it back.
//!
//! Layout (little-endian):
//!
//! | field | size |
//! |---|---|
//! | magic `b"VRHNSW\0\0"` | 8 |
//! | format version ([`FORMAT_VERSION`]) | 4 |
//! | dim, metric tag, storage tag, m, ef_construct, ef_search | 6 × 4 |
//! | full_scan_threshold | 8 |
//! | oversampling, quantile (`f32`) | 4 + 4 |
//! | seed | 8 |
//! | end (slots saved), live count | 4 + 8 |
//! | entry (`level << 32 | offset`, or all ones) | 8 |
//! | primary record bytes, secondary record bytes | 8 + 8 |
//! | quantizer: length, then `quant`'s own framed format (absent for `f32`/`f16`; a product quantizer gives the sub-space count, a RaBitQ one the bits a dimension) | 8 + n |
//! | upper links: node count, then per node `offset`, word count, words | 8 + … |
//! | primary records, `end × primary bytes`: state (`u32`, then 4 bytes of padding), payload, level-0 links (count, ids), then padding to the record size | … |
//! | secondary records (full vectors of quantized storages), `end × secondary bytes` | … |
//! | CRC-32 (IEEE) of everything above | 4 |
//!
//! Versions: 1 padded each primary record to whole cache lines (64 bytes); 2 writes the arena's
//! own record size, which pads less (`arena::record_stride`). The fields sit at the same
//! offsets in both, so this build reads either and keeps the arena's size in memory.
//!
//! The loader maps the file, checks the magic, version and checksum before it trusts a single
//! field, then rebuilds the record store. With [`LoadOptions::vectors_on_disk`], the secondary
//! records stay in the file map and are read from there (the page cache), so only codes and
//! links take RAM: the map is advised for random access (a search reads a few vectors, and
//! read-ahead around each would read megabytes), and the pages the checksum mapped in are
//! unmapped again once it has passed.

use crate::arena::{map_file, SlotState};
use crate::config::{HnswConfig, StorageKind};
use crate::index::{Codec, HnswIndex};
use index_core::{IndexError, Result};
use quant::{BinaryQuantizer, Metric, ProductQuantizer, RabitqQuantizer, ScalarQuantizer};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// The magic bytes that open an index file.
pub const MAGIC: [u8; 8] = *b"VRHNSW\0\0";
/// The format version this build writes (it also reads version 1).
pub const FORMAT_VERSION: u32 = 2;

/// How [`HnswIndex::load`] places what it reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Keep the full-precision vectors of a quantized index in the file map instead of RAM.
    pub vectors_on_disk: bool,
}

impl HnswIndex {
    /// Saves the index to `path` (written to a temporary file beside it, synced, then renamed,
    /// so a crash leaves either the old file or the new one). Inserts running during the save
    /// may or may not be included.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        persist::replace_file(path.as_ref(), |file| self.write_to(file))?;
        Ok(())
    }

    /// Writes the file's bytes (see the module doc), the checksum last.
    fn write_to(&self, file: &mut impl Write) -> std::io::Result<()> {
        let mut out = persist::ChecksumWriter::new(file);
        let c = &self.config;
        let end = self.end.load(Ordering::Acquire);
        out.write_all(&MAGIC)?;
        for v in [
            FORMAT_VERSION,
            self.dim as u32,
            self.metric.tag(),
            c.storage.tag(),
            c.m as u32,
            c.ef_construct as u32,
            c.ef_search as u32,
        ] {
            out.write_all(&v.to_le_bytes())?;
        }
        out.write_all(&(c.full_scan_threshold as u64).to_le_bytes())?;
        out.write_all(&c.oversampling.to_le_bytes())?;
        out.write_all(&c.quantile.to_le_bytes())?;
        out.write_all(&c.seed.to_le_bytes())?;
        out.write_all(&end.to_le_bytes())?;
        out.write_all(&(self.live.load(Ordering::Acquire) as u64).to_le_bytes())?;
        out.write_all(&self.entry.load(Ordering::Acquire).to_le_bytes())?;
        out.write_all(&(self.arena.primary_bytes() as u64).to_le_bytes())?;
        out.write_all(&(self.arena.secondary_bytes() as u64).to_le_bytes())?;
        let mut codec = Vec::new();
        match &self.codec {
            Codec::F32 | Codec::F16 => {}
            Codec::Sq8(sq) => sq.write_to(&mut codec).map_err(std::io::Error::other)?,
            Codec::Binary(bq) => bq.write_to(&mut codec).map_err(std::io::Error::other)?,
            Codec::Pq(pq) => pq.write_to(&mut codec).map_err(std::io::Error::other)?,
            Codec::Rabitq(rq) => rq.write_to(&mut codec).map_err(std::io::Error::other)?,
        }
        out.write_all(&(codec.len() as u64).to_le_bytes())?;
        out.write_all(&codec)?;
        {
            let upper = self.upper.read().unwrap_or_else(|e| e.into_inner());
            let mut nodes: Vec<(&u32, &Box<[AtomicU32]>)> =
                upper.iter().filter(|(&n, _)| n < end).collect();
            nodes.sort_by_key(|(&n, _)| n);
            out.write_all(&(nodes.len() as u64).to_le_bytes())?;
            for (&n, words) in nodes {
                out.write_all(&n.to_le_bytes())?;
                out.write_all(&(words.len() as u32).to_le_bytes())?;
                for w in words.iter() {
                    out.write_all(&w.load(Ordering::Acquire).to_le_bytes())?;
                }
            }
        }
        let mut record = Vec::with_capacity(self.arena.primary_bytes());
        for slot in 0..end {
            record.clear();
            self.arena.copy_primary(slot, &mut record);
            out.write_all(&record)?;
        }
        let zeros = vec![0u8; self.arena.secondary_bytes()];
        // Vectors left on disk are read in order here: read ahead while the pass lasts, then
        // unmap what it mapped in (searches read a few at random).
        self.arena.advise_frozen_secondary(true);
        let written = (0..end).try_for_each(|slot| match self.arena.secondary(slot) {
            Some(s) => out.write_all(s),
            None => out.write_all(&zeros),
        });
        self.arena.advise_frozen_secondary(false);
        self.arena.release_frozen_secondary();
        written?;
        out.finish()?;
        Ok(())
    }

    /// Loads an index saved by [`HnswIndex::save`]; a damaged, foreign or other-version file is
    /// refused with [`IndexError::Corrupt`] naming it.
    pub fn load(path: impl AsRef<Path>, options: LoadOptions) -> Result<HnswIndex> {
        let path = path.as_ref();
        let corrupt = |reason: String| IndexError::Corrupt {
            path: path.display().to_string(),
            reason,
        };
        let file = std::fs::File::open(path)?;
        let map = map_file(&file)?;
        let (body, version) = persist::check_frame_versions(&map, &MAGIC, 1..=FORMAT_VERSION)
            .map_err(|e| match e {
                persist::FrameError::BadMagic => {
                    corrupt("not an HNSW index file (bad magic)".into())
                }
                e => corrupt(e.to_string()),
            })?;
        let mut r = Reader {
            cursor: persist::Cursor::new(body, 12),
            path,
        };
        let dim = r.u32()? as usize;
        let metric = Metric::from_tag(r.u32()?).ok_or_else(|| corrupt("unknown metric".into()))?;
        let storage = StorageKind::from_tag(r.u32()?)
            .ok_or_else(|| corrupt("unknown storage kind".into()))?;
        let mut config = HnswConfig {
            m: r.u32()? as usize,
            ef_construct: r.u32()? as usize,
            ef_search: r.u32()? as usize,
            full_scan_threshold: r.u64()? as usize,
            oversampling: r.f32()?,
            quantile: r.f32()?,
            seed: r.u64()?,
            storage,
            pq_subspaces: 0,
            rabitq_bits: 1,
        };
        let end = r.u32()?;
        let live = r.u64()? as usize;
        let entry = r.u64()?;
        let primary_bytes = r.u64()? as usize;
        let secondary_bytes = r.u64()? as usize;
        let codec_len = r.u64()? as usize;
        let mut codec_bytes = r.bytes(codec_len)?;
        let codec = match storage {
            StorageKind::F32 => Codec::F32,
            StorageKind::F16 => Codec::F16,
            StorageKind::Sq8 => {
                let sq = ScalarQuantizer::read_from(&mut codec_bytes)?;
                if sq.dim() != dim {
                    return Err(corrupt(format!(
                        "scalar quantizer of dimension {} in an index of dimension {dim}",
                        sq.dim()
                    )));
                }
                Codec::Sq8(sq)
            }
            StorageKind::Binary => {
                let bq = BinaryQuantizer::read_from(&mut codec_bytes)?;
                if bq.dim() != dim {
                    return Err(corrupt(format!(
                        "binary quantizer of dimension {} in an index of dimension {dim}",
                        bq.dim()
                    )));
                }
                Codec::Binary(bq)
            }
            StorageKind::Pq => {
                let pq = ProductQuantizer::read_from(&mut codec_bytes)?;
                if pq.dim() != dim {
                    return Err(corrupt(format!(
                        "product quantizer of dimension {} in an index of dimension {dim}",
                        pq.dim()
                    )));
                }
                config.pq_subspaces = pq.m();
                Codec::Pq(pq)
            }
            StorageKind::Rabitq => {
                let rq = RabitqQuantizer::read_from(&mut codec_bytes)?;
                if rq.dim() != dim {
                    return Err(corrupt(format!(
                        "RaBitQ quantizer of dimension {} in an index of dimension {dim}",
                        rq.dim()
                    )));
                }
                config.rabitq_bits = rq.bits();
                Codec::Rabitq(rq)
            }
        };
        let mut index = HnswIndex::with_codec(dim, metric, config, codec)
            .map_err(|e| corrupt(e.to_string()))?;
        let link_words = 1 + index.config.m0();
        let saved_primary_bytes = match version {
            1 => (index.arena.links_offset() + 4 * link_words).next_multiple_of(64),
            _ => index.arena.primary_bytes(),
        };
        if primary_bytes != saved_primary_bytes || index.arena.secondary_bytes() != secondary_bytes
        {
            return Err(corrupt(
                "record sizes do not match the configuration".into(),
            ));
        }
        let upper_count = r.u64()? as usize;
        // Sized by what the file can hold (each entry takes at least 8 bytes), never by the
        // count alone: a crafted file (a snapshot upload) with a count in the billions and a
        // valid checksum made the load ask for tens of gigabytes (found by `fuzz/hnsw_file`).
        let room = body.len().saturating_sub(r.cursor.position()) / 8;
        let mut upper =
            std::collections::HashMap::with_capacity(upper_count.min(end as usize).min(room));
        for _ in 0..upper_count {
            let node = r.u32()?;
            let words = r.u32()? as usize;
            if node >= end || !words.is_multiple_of(1 + index.config.m) {
                return Err(corrupt(format!("bad upper links for node {node}")));
            }
            let raw = r.bytes(words * 4)?;
            let words: Box<[AtomicU32]> = raw
                .chunks_exact(4)
                .map(|c| AtomicU32::new(u32::from_le_bytes(c.try_into().expect("4 bytes"))))
                .collect();
            upper.insert(node, words);
        }
        let records_start = r.cursor.position();
        // Checked: the counts come from the file.
        let region = |bytes: usize| (end as usize).checked_mul(bytes);
        let secondary_start = region(primary_bytes).and_then(|n| n.checked_add(records_start));
        let records_end = secondary_start
            .zip(region(secondary_bytes))
            .and_then(|(a, b)| a.checked_add(b));
        let (Some(secondary_start), Some(body_len)) = (secondary_start, records_end) else {
            return Err(corrupt("record counts overflow".into()));
        };
        if body_len != body.len() {
            return Err(corrupt(
                "file length does not match the record counts".into(),
            ));
        }
        let secondary_on_disk = options.vectors_on_disk && secondary_bytes > 0;
        let payload_bytes = index.codec.payload_bytes(dim);
        let mut published = 0usize;
        for slot in 0..end {
            let rec = &body[records_start + slot as usize * primary_bytes..][..primary_bytes];
            let state = u32::from_le_bytes(rec[..4].try_into().expect("4 bytes"));
            if state < SlotState::Live as u32 {
                continue;
            }
            let Some(mut writer) = index.arena.claim(slot)? else {
                return Err(corrupt(format!("slot {slot} appears twice")));
            };
            writer.write_payload(&rec[index.arena.payload_offset()..][..payload_bytes]);
            if secondary_bytes > 0 && !secondary_on_disk {
                writer.write_secondary(
                    &body[secondary_start + slot as usize * secondary_bytes..][..secondary_bytes],
                );
            }
            writer.publish();
            let links = index.arena.links_offset();
            let words: Vec<u32> = rec[links..links + 4 * link_words]
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            let count = words[0] as usize;
            if count > link_words - 1 || words[1..1 + count].iter().any(|&n| n >= end) {
                return Err(corrupt(format!("bad links for slot {slot}")));
            }
            index.arena.restore_links(slot, &words);
            if state == SlotState::Deleted as u32 {
                index.arena.delete(slot);
            } else {
                published += 1;
            }
        }
        if published != live {
            return Err(corrupt(format!(
                "{published} live records, the header says {live}"
            )));
        }
        if entry != u64::MAX && (entry as u32 >= end) {
            return Err(corrupt("entry point out of range".into()));
        }
        // The entry's level is the count of its upper levels: a crafted level in the billions
        // made every search descend through that many empty levels, minutes per query (found
        // by `fuzz/hnsw_file` with a 10 s timeout).
        if entry != u64::MAX {
            let levels = upper
                .get(&(entry as u32))
                .map_or(0, |words| words.len() / (1 + index.config.m));
            if (entry >> 32) as usize > levels {
                return Err(corrupt(format!(
                    "entry point at level {} with {levels} upper levels",
                    entry >> 32
                )));
            }
        }
        if secondary_on_disk {
            drop(file);
            index
                .arena
                .freeze_secondary(map, secondary_start, end as usize);
            // The checksum read every page of the file through the map, so every vector
            // left on disk was mapped into the process (and counted in its resident memory,
            // the size of the vectors at 1024 dimensions). Searches map back in only the
            // few they re-rank.
            index.arena.release_frozen_secondary();
        }
        *index.upper.get_mut().unwrap_or_else(|e| e.into_inner()) = upper;
        index.entry.store(entry, Ordering::Release);
        index.live.store(live, Ordering::Release);
        index.end.store(end, Ordering::Release);
        // The loaded nodes count as checked: a build or batch checks its nodes before the
        // index is saved, but nodes inserted one by one since the last `link_unreachable`
        // (or by an older version, which did not check) are not gone back over.
        index.checked_findable.store(end, Ordering::Release);
        Ok(index)
    }
}

/// Fields of the checked body of a file; ending early is corruption of `path`.
struct Reader<'a> {
    cursor: persist::Cursor<'a>,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn ends_early(&self) -> IndexError {
        IndexError::Corrupt {
            path: self.path.display().to_string(),
            reason: "file ends early".into(),
        }
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        self.cursor.bytes(n).ok_or_else(|| self.ends_early())
    }
    fn u32(&mut self) -> Result<u32> {
        self.cursor.u32().ok_or_else(|| self.ends_early())
    }
    fn u64(&mut self) -> Result<u64> {
        self.cursor.u64().ok_or_else(|| self.ends_early())
    }
    fn f32(&mut self) -> Result<f32> {
        self.cursor.f32().ok_or_else(|| self.ends_early())
    }
}
