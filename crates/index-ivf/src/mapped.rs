//! The full-precision vectors kept for re-ranking: in RAM, or left in the memory map of a
//! saved index so that only the codes take memory.

use memmap2::Mmap;

/// Full-precision (prepared) vectors, `dim` values per offset.
#[derive(Debug)]
pub(crate) enum FullVectors {
    /// Not kept (flat lists, or `refine: false`).
    None,
    /// In RAM, offset after offset.
    Ram(Vec<f32>),
    /// In the map of a saved index file: `slots` vectors from byte `start`.
    Mapped {
        map: Mmap,
        start: usize,
        slots: usize,
    },
}

/// Maps a file read-only.
pub(crate) fn map_file(file: &std::fs::File) -> std::io::Result<Mmap> {
    // SAFETY: the map is read-only (`PROT_READ`, `MAP_SHARED`). A file changed under the map
    // by another process would change what we read (never memory safety of our own data
    // structures beyond the values read); index files are written to a temporary name and
    // renamed, never rewritten in place, so a file we map is not modified by this project.
    #[allow(unsafe_code)]
    unsafe {
        Mmap::map(file)
    }
}

impl FullVectors {
    /// The `slots` vectors of `dim` values from byte `start` of `map`, served from the map.
    ///
    /// A re-rank reads a few vectors at random: the map is advised so, or each page fault
    /// would read the device's whole read-ahead window around it (megabytes on some disks;
    /// measured on HNSW's mapped vectors, which share the pattern). The pages the load's
    /// checksum mapped in are unmapped again, so that the vectors do not count in the
    /// process's resident memory until read (the page cache keeps them while it can).
    pub(crate) fn mapped(map: Mmap, start: usize, slots: usize, dim: usize) -> FullVectors {
        let full = FullVectors::Mapped { map, start, slots };
        full.advise(false, dim);
        full.release(dim);
        full
    }

    /// Advises a mapped store for reads in order (`true`: a pass over every vector reads far
    /// ahead) or at random (`false`, what re-ranks do). Nothing for a store in RAM.
    pub(crate) fn advise(&self, in_order: bool, dim: usize) {
        #[cfg(unix)]
        if let FullVectors::Mapped { map, start, slots } = self {
            let advice = if in_order {
                memmap2::Advice::Sequential
            } else {
                memmap2::Advice::Random
            };
            let _ = map.advise_range(advice, *start, slots * dim * 4);
        }
        #[cfg(not(unix))]
        let _ = (in_order, dim);
    }

    /// Unmaps a mapped store's pages from the process (the page cache keeps them while it
    /// can; the next read maps them again).
    pub(crate) fn release(&self, dim: usize) {
        #[cfg(unix)]
        if let FullVectors::Mapped { map, start, slots } = self {
            // SAFETY: a read-only shared map (`PROT_READ`, `MAP_SHARED`) of a file this
            // project never writes in place (see `map_file`): `MADV_DONTNEED` drops only the
            // page-table entries, and a later read of any of these addresses, through a slice
            // held meanwhile included, faults the same bytes in again from the page cache or
            // the file.
            #[allow(unsafe_code)]
            unsafe {
                let _ = map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    *start,
                    slots * dim * 4,
                );
            }
        }
        #[cfg(not(unix))]
        let _ = dim;
    }

    pub(crate) fn is_some(&self) -> bool {
        !matches!(self, FullVectors::None)
    }

    /// The vector at `offset`, if one is stored there.
    #[inline]
    pub(crate) fn get(&self, offset: u32, dim: usize) -> Option<&[f32]> {
        let start = offset as usize * dim;
        match self {
            FullVectors::None => None,
            FullVectors::Ram(v) => v.get(start..start + dim),
            FullVectors::Mapped {
                map,
                start: base,
                slots,
            } => {
                if offset as usize >= *slots {
                    return None;
                }
                let bytes = &map[base + start * 4..base + (start + dim) * 4];
                // The section starts 64-byte aligned in the file and the map is page
                // aligned, so the cast cannot fail on alignment.
                Some(bytemuck::cast_slice(bytes))
            }
        }
    }

    /// Starts loading the vector at `offset`, so that a re-rank's loads overlap.
    #[inline]
    pub(crate) fn prefetch(&self, offset: u32, dim: usize) {
        if let Some(v) = self.get(offset, dim) {
            quant::kernels::prefetch(v.as_ptr() as *const u8, dim * 4);
        }
    }

    /// Stores `data` (flat, prepared) at offsets `first ..`; a mapped store is first copied
    /// into RAM, since the map is read-only.
    pub(crate) fn store(&mut self, first: usize, data: &[f32], dim: usize) {
        if let FullVectors::Mapped { .. } = self {
            let slots = match self {
                FullVectors::Mapped { slots, .. } => *slots,
                _ => 0,
            };
            // Read in order: the map drops right after.
            self.advise(true, dim);
            let mut ram = Vec::with_capacity(slots * dim);
            for o in 0..slots {
                ram.extend_from_slice(self.get(o as u32, dim).expect("below slots"));
            }
            *self = FullVectors::Ram(ram);
        }
        if let FullVectors::Ram(v) = self {
            let end = (first * dim) + data.len();
            if v.len() < end {
                v.resize(end, 0.0);
            }
            v[first * dim..end].copy_from_slice(data);
        }
    }

    /// The vectors as one slice of `slots · dim` values (what a save writes).
    pub(crate) fn as_slice(&self, dim: usize) -> &[f32] {
        match self {
            FullVectors::None => &[],
            FullVectors::Ram(v) => v,
            FullVectors::Mapped { map, start, slots } => {
                bytemuck::cast_slice(&map[*start..*start + slots * dim * 4])
            }
        }
    }

    /// Bytes held in RAM and bytes left on disk.
    pub(crate) fn bytes(&self) -> (usize, usize) {
        match self {
            FullVectors::None => (0, 0),
            FullVectors::Ram(v) => (v.capacity() * 4, 0),
            FullVectors::Mapped { map, start, .. } => (0, map.len() - start),
        }
    }
}
