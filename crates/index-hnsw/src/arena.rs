//! Fixed-size node records in anonymous memory maps that grow without moving, written once and
//! then shared by every thread: the only `unsafe` code of the crate.
//!
//! Each slot has two records:
//!
//! * the **primary** record, `[state: u32, pad][payload bytes][links: u32 × link_words]`: the
//!   slot's state (empty, claimed, live, deleted), the vector the graph walk measures (`f32`,
//!   `f16` or codes, written once before the slot is published), and its level-0 neighbour
//!   list (a count, then ids). State and links are read and written only as atomics. A walk
//!   measures many more nodes than it expands, so the state and payload come first: measuring
//!   a node touches one contiguous run of cache lines, and the links only when it is expanded.
//!   Records follow each other with as little padding as keeps that run as short as in a
//!   record aligned to a line ([`record_stride`]);
//! * an optional **secondary** record: the full-precision vector of a quantized index, used to
//!   rescore. It lives in its own map so that it can stay on disk after a load.
//!
//! Slots live in buckets of doubling size (1,024 slots, then 2,048, ...), each bucket one
//! anonymous memory map created on first use and never moved, so readers keep plain
//! references while writers add slots: growth needs no lock and no copy. Untouched pages of a
//! bucket cost no memory.
//!
//! Publication: a writer claims a slot (CAS empty → claimed), writes the payloads through its
//! [`SlotWriter`], and publishes (store live, `Release`). Readers get payloads only through
//! [`Arena::payload`] and [`Arena::secondary`], which load the state with `Acquire` and refuse
//! unpublished slots, so a reader never sees a payload being written, and a published payload
//! is never written again.

use memmap2::{Mmap, MmapMut};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Slots in the first bucket; bucket `b` holds `FIRST_BUCKET << b`.
const FIRST_BUCKET: usize = 1024;
/// Buckets: enough for every `u32` offset.
const BUCKETS: usize = 23;

/// A slot's life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum SlotState {
    Empty = 0,
    Claimed = 1,
    Live = 2,
    Deleted = 3,
}

impl SlotState {
    fn from_word(v: u32) -> SlotState {
        match v {
            1 => SlotState::Claimed,
            2 => SlotState::Live,
            3 => SlotState::Deleted,
            _ => SlotState::Empty,
        }
    }
}

/// One bucket: its state bytes and its maps.
struct Bucket {
    /// Owns the map `primary_base` points into; never read directly.
    _primary: MmapMut,
    primary_base: *mut u8,
    secondary: Option<(MmapMut, *mut u8)>,
}

// SAFETY: the raw pointers point into the maps owned by the same `Bucket`, which live as long as
// it does and never move. Every access through them follows the protocol in the module doc:
// link words only as atomics, payload bytes written by the one claiming thread before the
// `Release` publish and only read after an `Acquire` load that saw the publish. So sharing a
// `Bucket` between threads creates no data race.
unsafe impl Send for Bucket {}
// SAFETY: as above.
unsafe impl Sync for Bucket {}

/// Secondary records of slots `0 .. count` served from a read-only file map (after a load with
/// vectors kept on disk) instead of the buckets.
struct FrozenSecondary {
    map: Mmap,
    offset: usize,
    count: usize,
}

/// The record store of one graph.
pub(crate) struct Arena {
    link_words: usize,
    payload_bytes: usize,
    /// Offset of the links in a primary record: 8 (state and padding) plus the payload.
    links_offset: usize,
    primary_bytes: usize,
    secondary_bytes: usize,
    buckets: Vec<OnceLock<Bucket>>,
    frozen_secondary: Option<FrozenSecondary>,
}

/// Bytes from one primary record to the next: the fewest, in multiples of 8, for which
/// measuring any node (its first `measured` bytes: state and payload) touches no more cache
/// lines than it would in a record that starts a line.
///
/// Records padded to whole lines waste up to 63 bytes each (52 at 384 dimensions of `f32` with
/// 32 links, 44 at 50; this stride pads them by 4 and 12). A stride that is a multiple of `g`
/// (a power of two) puts records at every multiple of `g` within a line, so the worst start
/// is `64 - g` bytes into one; the smallest `g` whose worst start still fits `measured` in
/// the aligned line count is kept. The links, read for the far fewer nodes a walk expands,
/// may straddle one more line, and the last of them share a line with the next record's
/// state: a concurrent insert's link write invalidates a line another thread's walk may read.
pub(crate) fn record_stride(measured: usize, bytes: usize) -> usize {
    let lines = measured.div_ceil(64);
    let mut g = 8;
    while g < 64 && 64 - g + measured > lines * 64 {
        g *= 2;
    }
    bytes.next_multiple_of(g)
}

/// Exclusive write access to one claimed, not yet published slot.
pub(crate) struct SlotWriter<'a> {
    arena: &'a Arena,
    slot: u32,
}

impl Arena {
    /// An empty arena. `payload_bytes` and `secondary_bytes` are rounded up to 8 bytes, so
    /// every record (and every `u64` or `f32` inside it) stays aligned.
    pub fn new(link_words: usize, payload_bytes: usize, secondary_bytes: usize) -> Arena {
        let payload_bytes = payload_bytes.next_multiple_of(8);
        let links_offset = 8 + payload_bytes;
        Arena {
            link_words,
            payload_bytes,
            links_offset,
            primary_bytes: record_stride(links_offset, links_offset + link_words * 4),
            secondary_bytes: secondary_bytes.next_multiple_of(8),
            buckets: (0..BUCKETS).map(|_| OnceLock::new()).collect(),
            frozen_secondary: None,
        }
    }

    /// Bytes of one primary record.
    pub fn primary_bytes(&self) -> usize {
        self.primary_bytes
    }

    /// Bytes of one secondary record (0 when there is none).
    pub fn secondary_bytes(&self) -> usize {
        self.secondary_bytes
    }

    #[inline]
    fn locate(slot: u32) -> (usize, usize) {
        let x = slot as usize / FIRST_BUCKET + 1;
        let b = (usize::BITS - 1 - x.leading_zeros()) as usize;
        (b, slot as usize - FIRST_BUCKET * ((1 << b) - 1))
    }

    #[inline]
    fn bucket(&self, slot: u32) -> Option<(&Bucket, usize)> {
        let (b, i) = Self::locate(slot);
        self.buckets.get(b)?.get().map(|bucket| (bucket, i))
    }

    fn bucket_or_create(&self, slot: u32) -> std::io::Result<(&Bucket, usize)> {
        let (b, i) = Self::locate(slot);
        let cell = &self.buckets[b];
        if let Some(bucket) = cell.get() {
            return Ok((bucket, i));
        }
        let len = FIRST_BUCKET << b;
        let mut primary = MmapMut::map_anon(len * self.primary_bytes)?;
        // A walk touches records all over the map: with 4 KiB pages nearly every node is a TLB
        // miss, which stalls even the prefetches. Transparent huge pages (where the kernel
        // offers them on request) cut those misses; failure to get them is harmless.
        #[cfg(target_os = "linux")]
        let _ = primary.advise(memmap2::Advice::HugePage);
        let primary_base = primary.as_mut_ptr();
        let secondary = if self.secondary_bytes > 0 {
            let mut map = MmapMut::map_anon(len * self.secondary_bytes)?;
            #[cfg(target_os = "linux")]
            let _ = map.advise(memmap2::Advice::HugePage);
            let base = map.as_mut_ptr();
            Some((map, base))
        } else {
            None
        };
        // Two threads may race to create the bucket: one wins, the other's maps are dropped
        // unused.
        let _ = cell.set(Bucket {
            _primary: primary,
            primary_base,
            secondary,
        });
        Ok((cell.get().expect("set above or by the winner"), i))
    }

    /// The state word of a slot.
    #[inline]
    fn state_word(&self, bucket: &Bucket, i: usize) -> &AtomicU32 {
        // SAFETY: the bucket's primary map holds `len · primary_bytes` bytes and `i < len`, so
        // the 4 bytes at `i · primary_bytes` are inside it, 8-aligned (records are multiples of
        // 8 bytes from a page-aligned base). The map is zero-initialised and these bytes are
        // only ever accessed as an `AtomicU32` (module doc), valid for as long as `&self`: a
        // bucket never moves or unmaps while the arena lives.
        unsafe { &*(bucket.primary_base.add(i * self.primary_bytes) as *const AtomicU32) }
    }

    /// The level-0 link words of a slot, `[count, id, id, ...]`.
    #[inline]
    fn link_words(&self, bucket: &Bucket, i: usize) -> &[AtomicU32] {
        // SAFETY: as in `state_word`, for the `link_words · 4` bytes at `links_offset` inside
        // the record (4-aligned: `links_offset` is a multiple of 8), also only ever accessed
        // as atomics.
        unsafe {
            let ptr = bucket
                .primary_base
                .add(i * self.primary_bytes + self.links_offset)
                as *const AtomicU32;
            std::slice::from_raw_parts(ptr, self.link_words)
        }
    }

    /// The slot's state.
    #[inline]
    pub fn state(&self, slot: u32) -> SlotState {
        match self.bucket(slot) {
            Some((bucket, i)) => {
                SlotState::from_word(self.state_word(bucket, i).load(Ordering::Acquire))
            }
            None => SlotState::Empty,
        }
    }

    /// Claims an empty slot for writing; `Ok(None)` when it was ever used before.
    pub fn claim(&self, slot: u32) -> std::io::Result<Option<SlotWriter<'_>>> {
        let (bucket, i) = self.bucket_or_create(slot)?;
        let won = self
            .state_word(bucket, i)
            .compare_exchange(
                SlotState::Empty as u32,
                SlotState::Claimed as u32,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        Ok(won.then_some(SlotWriter { arena: self, slot }))
    }

    /// Marks a live slot deleted; returns whether it was live.
    pub fn delete(&self, slot: u32) -> bool {
        match self.bucket(slot) {
            Some((bucket, i)) => self
                .state_word(bucket, i)
                .compare_exchange(
                    SlotState::Live as u32,
                    SlotState::Deleted as u32,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok(),
            None => false,
        }
    }

    /// The level-0 link words of a slot: `[count, id, id, ...]`, as atomics. Empty for a slot
    /// whose bucket does not exist.
    #[inline]
    pub fn links(&self, slot: u32) -> &[AtomicU32] {
        match self.bucket(slot) {
            Some((bucket, i)) => self.link_words(bucket, i),
            None => &[],
        }
    }

    /// Hints the CPU to load the slot's state and payload (what measuring it reads).
    #[inline]
    pub fn prefetch(&self, slot: u32) {
        if let Some((bucket, i)) = self.bucket(slot) {
            quant::kernels::prefetch(
                bucket.primary_base.wrapping_add(i * self.primary_bytes),
                self.links_offset,
            );
        }
    }

    /// Hints the CPU to load the line of the slot's state word alone: what reading its
    /// secondary record from the buckets checks first (a frozen secondary is read without it).
    #[inline]
    pub fn prefetch_state(&self, slot: u32) {
        if let Some((bucket, i)) = self.bucket(slot) {
            quant::kernels::prefetch(bucket.primary_base.wrapping_add(i * self.primary_bytes), 1);
        }
    }

    /// Hints the CPU to load the slot's level-0 links (before the walk expands it).
    #[inline]
    pub fn prefetch_links(&self, slot: u32) {
        if let Some((bucket, i)) = self.bucket(slot) {
            let start = bucket
                .primary_base
                .wrapping_add(i * self.primary_bytes + self.links_offset);
            quant::kernels::prefetch(start, self.link_words * 4);
        }
    }

    /// Hints the CPU to load the slot's secondary record (a full vector being rescored or
    /// measured by an insert).
    #[inline]
    pub fn prefetch_secondary(&self, slot: u32) {
        if let Some(frozen) = &self.frozen_secondary {
            if (slot as usize) < frozen.count {
                let start = frozen.offset + slot as usize * self.secondary_bytes;
                quant::kernels::prefetch(
                    frozen.map.as_ptr().wrapping_add(start),
                    self.secondary_bytes,
                );
                return;
            }
        }
        if let Some((bucket, i)) = self.bucket(slot) {
            if let Some((_, base)) = &bucket.secondary {
                quant::kernels::prefetch(
                    base.wrapping_add(i * self.secondary_bytes),
                    self.secondary_bytes,
                );
            }
        }
    }

    /// The payload of a published slot and whether it is live (rather than deleted): one
    /// lookup for what a walk needs to measure a node and decide whether it may be a result.
    #[inline]
    pub fn payload_and_liveness(&self, slot: u32) -> Option<(&[u8], bool)> {
        let (bucket, i) = self.bucket(slot)?;
        let state = self.state_word(bucket, i).load(Ordering::Acquire);
        if state < SlotState::Live as u32 {
            return None;
        }
        Some((
            self.payload_unchecked(bucket, i)?,
            state == SlotState::Live as u32,
        ))
    }

    /// The payload of a published (live or deleted) slot.
    #[inline]
    pub fn payload(&self, slot: u32) -> Option<&[u8]> {
        self.payload_and_liveness(slot).map(|(p, _)| p)
    }

    /// The payload bytes of a slot the caller has seen published.
    #[inline]
    fn payload_unchecked(&self, bucket: &Bucket, i: usize) -> Option<&[u8]> {
        // SAFETY: in bounds as in `words`. The caller saw the slot published with an `Acquire`
        // load, which happens-after the one write of these bytes; they are never written
        // again.
        unsafe {
            let ptr = bucket.primary_base.add(i * self.primary_bytes + 8);
            Some(std::slice::from_raw_parts(ptr, self.payload_bytes))
        }
    }

    /// The secondary record of a published slot (`None` when the arena has none).
    #[inline]
    pub fn secondary(&self, slot: u32) -> Option<&[u8]> {
        if let Some(frozen) = &self.frozen_secondary {
            if (slot as usize) < frozen.count {
                let start = frozen.offset + slot as usize * self.secondary_bytes;
                return frozen.map.get(start..start + self.secondary_bytes);
            }
        }
        let (bucket, i) = self.bucket(slot)?;
        let (_, base) = bucket.secondary.as_ref()?;
        if self.state_word(bucket, i).load(Ordering::Acquire) < SlotState::Live as u32 {
            return None;
        }
        // SAFETY: as in `payload`, for the secondary map of the same bucket.
        unsafe {
            Some(std::slice::from_raw_parts(
                base.add(i * self.secondary_bytes),
                self.secondary_bytes,
            ))
        }
    }

    /// Serves the secondary records of slots `0 .. count` from `map` at `offset` from now on.
    /// Called on a fresh arena, before any of those slots is claimed.
    pub fn freeze_secondary(&mut self, map: Mmap, offset: usize, count: usize) {
        // Searches read a few full vectors at random (a walk's re-ranked candidates). With
        // the kernel's default read-ahead each page fault read up to the device's read-ahead
        // window around it: 149 MB from the disk for a query re-ranking 31 vectors of 4 KB
        // (`examples/hnsw --cold`, 1024 dimensions, a disk with 8 MB of read-ahead), 250 KB
        // with this advice. Qdrant advises its memory-mapped vectors the same way.
        #[cfg(unix)]
        let _ = map.advise_range(
            memmap2::Advice::Random,
            offset,
            count * self.secondary_bytes,
        );
        self.frozen_secondary = Some(FrozenSecondary { map, offset, count });
    }

    /// Advises the file region of the secondary records for reads in order (`true`: a pass
    /// over all of them, such as a save or a copy, reads far ahead) or at random (`false`, the
    /// default: each fault reads its own page). Under the random advice alone, a pass in order
    /// would read page after page synchronously.
    pub fn advise_frozen_secondary(&self, in_order: bool) {
        #[cfg(unix)]
        if let Some(frozen) = &self.frozen_secondary {
            let advice = if in_order {
                memmap2::Advice::Sequential
            } else {
                memmap2::Advice::Random
            };
            let _ =
                frozen
                    .map
                    .advise_range(advice, frozen.offset, frozen.count * self.secondary_bytes);
        }
        #[cfg(not(unix))]
        let _ = in_order;
    }

    /// Unmaps the pages of the secondary records served from the file map; the page cache
    /// keeps them until the kernel needs the memory, and a later read maps them again (or reads
    /// them from the file). Returns the file bytes released.
    pub fn release_frozen_secondary(&self) -> usize {
        let Some(frozen) = &self.frozen_secondary else {
            return 0;
        };
        let len = frozen.count * self.secondary_bytes;
        #[cfg(unix)]
        // SAFETY: the map is a read-only shared map of a file that is never written while it
        // is mapped (the index files are written once, then replaced by rename; see
        // `map_file`). `MADV_DONTNEED` on such a map only drops the page-table entries: a
        // later read of any address in it, including through a slice a concurrent search
        // holds, faults the same bytes in again from the page cache or the file, so no
        // reader ever sees other contents. (On a private or anonymous map the same advice
        // would zero the pages; this map is neither.)
        unsafe {
            let _ = frozen.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                frozen.offset,
                len,
            );
        }
        len
    }

    /// Bytes of memory the buckets hold in RAM for `slots` slots (secondary records on disk
    /// are not counted).
    pub fn ram_bytes(&self, slots: usize) -> (usize, usize) {
        let frozen = self.frozen_secondary.as_ref().map_or(0, |f| f.count);
        let secondary = slots.saturating_sub(frozen) * self.secondary_bytes;
        (slots * self.primary_bytes, secondary)
    }

    /// Bytes of secondary records served from a file map.
    pub fn disk_secondary_bytes(&self) -> usize {
        self.frozen_secondary
            .as_ref()
            .map_or(0, |f| f.count * self.secondary_bytes)
    }
}

impl Arena {
    /// Appends slot `slot`'s primary record to `out` as it would be saved: the state and link
    /// words (read atomically), then the payload of a published slot (zeros otherwise).
    pub fn copy_primary(&self, slot: u32, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.primary_bytes, 0);
        let Some((bucket, i)) = self.bucket(slot) else {
            return;
        };
        let state = self.state_word(bucket, i).load(Ordering::Acquire);
        out[start..start + 4].copy_from_slice(&state.to_le_bytes());
        if state >= SlotState::Live as u32 {
            if let Some(p) = self.payload_unchecked(bucket, i) {
                out[start + 8..start + 8 + self.payload_bytes].copy_from_slice(p);
            }
        }
        for (k, w) in self.link_words(bucket, i).iter().enumerate() {
            let at = start + self.links_offset + 4 * k;
            out[at..at + 4].copy_from_slice(&w.load(Ordering::Acquire).to_le_bytes());
        }
    }

    /// Offset of the payload in a saved primary record.
    pub fn payload_offset(&self) -> usize {
        8
    }

    /// Offset of the link words in a saved primary record.
    pub fn links_offset(&self) -> usize {
        self.links_offset
    }

    /// Sets a slot's link words (count and ids) from saved bytes; the slot must be published.
    pub fn restore_links(&self, slot: u32, words: &[u32]) {
        for (w, &v) in self.links(slot).iter().zip(words) {
            w.store(v, Ordering::Release);
        }
    }
}

/// Maps a whole file read-only.
pub(crate) fn map_file(file: &std::fs::File) -> std::io::Result<Mmap> {
    // SAFETY: the file is opened read-only by the caller and the map is only ever read. As with
    // any memory map, another process truncating or rewriting the file while it is mapped is
    // outside the contract (the index files are written once, then only read or replaced by
    // rename).
    unsafe { Mmap::map(file) }
}

impl SlotWriter<'_> {
    /// Copies `bytes` into the start of the slot's payload.
    pub fn write_payload(&mut self, bytes: &[u8]) {
        let arena = self.arena;
        assert!(
            bytes.len() <= arena.payload_bytes,
            "payload larger than the record"
        );
        let (bucket, i) = arena
            .bucket(self.slot)
            .expect("claimed slots have a bucket");
        // SAFETY: in bounds as in `Arena::payload`. The slot is claimed by this writer and not
        // yet published: no reader can obtain these bytes (payload requires a published state)
        // and no other writer can claim the slot, so this thread has exclusive access.
        unsafe {
            let dst = bucket.primary_base.add(i * arena.primary_bytes + 8);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
        }
    }

    /// Copies `bytes` into the start of the slot's secondary record.
    pub fn write_secondary(&mut self, bytes: &[u8]) {
        let arena = self.arena;
        assert!(
            bytes.len() <= arena.secondary_bytes,
            "secondary record too large"
        );
        let (bucket, i) = arena
            .bucket(self.slot)
            .expect("claimed slots have a bucket");
        let (_, base) = bucket
            .secondary
            .as_ref()
            .expect("the arena has secondary records");
        // SAFETY: as in `write_payload`, for the secondary map.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                base.add(i * arena.secondary_bytes),
                bytes.len(),
            );
        }
    }

    /// Makes the slot live: from now on readers see its payloads, and nobody writes them again.
    /// (A writer dropped without publishing leaves the slot claimed: never half-visible.)
    pub fn publish(self) {
        let (bucket, i) = self
            .arena
            .bucket(self.slot)
            .expect("claimed slots have a bucket");
        self.arena
            .state_word(bucket, i)
            .store(SlotState::Live as u32, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::record_stride;

    /// The most cache lines `measured` bytes touch over the first 64 records of `stride`
    /// bytes (every start a stride can reach within a line).
    fn worst_lines(stride: usize, measured: usize) -> usize {
        (0..64)
            .map(|k| {
                let start = k * stride;
                (start + measured - 1) / 64 - start / 64 + 1
            })
            .max()
            .expect("64 records")
    }

    #[test]
    fn record_stride_is_the_least_padding_that_keeps_a_measurement_in_its_lines() {
        // Payloads (rounded to 8, as the arena does) of every size up to 8 KiB, with the link
        // words of m = 4, 16 and 48.
        for payload in (8..8192).step_by(8) {
            for link_words in [9, 33, 97] {
                let measured = 8 + payload;
                let bytes = measured + 4 * link_words;
                let stride = record_stride(measured, bytes);
                assert!(
                    stride >= bytes && stride.is_multiple_of(8),
                    "{payload}, {link_words}"
                );
                assert!(stride <= bytes.next_multiple_of(64));
                assert_eq!(
                    worst_lines(stride, measured),
                    measured.div_ceil(64),
                    "payload {payload}, links {link_words}: stride {stride}"
                );
                // No shorter stride keeps that.
                for shorter in (bytes.next_multiple_of(8)..stride).step_by(8) {
                    assert!(
                        worst_lines(shorter, measured) > measured.div_ceil(64),
                        "payload {payload}, links {link_words}: {shorter} would do"
                    );
                }
            }
        }
        // The two sets of the benchmarks: 50 and 384 dimensions of f32, m 16.
        assert_eq!(record_stride(208, 208 + 132), 352);
        assert_eq!(record_stride(1544, 1544 + 132), 1680);
    }
}
