//! Which points a search may return.

use crate::PointOffset;

/// A predicate over point offsets, passed to a search to restrict its results.
///
/// Indexes also ask for a cardinality estimate to choose their strategy: when few points pass,
/// an exact scan of them beats walking a graph or probing lists (Qdrant's
/// `full_scan_threshold`).
pub trait PointFilter: Sync {
    /// Whether the point may be returned.
    fn allows(&self, offset: PointOffset) -> bool;

    /// An estimate of how many points pass, when known cheaply.
    fn cardinality_estimate(&self) -> Option<usize> {
        None
    }

    /// The passing offsets in increasing order, when the filter can list them cheaply (a
    /// bitset can; an arbitrary predicate cannot). A superset is allowed (callers still test
    /// [`PointFilter::allows`]), except when [`PointFilter::as_bitset`] is `Some`: then they
    /// are exactly that bitset's offsets, and callers may skip the test.
    fn allowed_offsets(&self) -> Option<Box<dyn Iterator<Item = PointOffset> + '_>> {
        None
    }

    /// The filter as a bitset, when it is exactly one (`allows(o) == bits.contains(o)` for
    /// every offset), so that an index can test it inline instead of through a call.
    fn as_bitset(&self) -> Option<&AllowedSet> {
        None
    }
}

impl<F: Fn(PointOffset) -> bool + Sync> PointFilter for F {
    fn allows(&self, offset: PointOffset) -> bool {
        self(offset)
    }
}

/// A set of allowed offsets as a bitset: what payload indexes produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedSet {
    words: Vec<u64>,
    count: usize,
}

impl AllowedSet {
    /// An empty set able to hold offsets below `capacity` without growing.
    pub fn with_capacity(capacity: usize) -> AllowedSet {
        AllowedSet {
            words: vec![0; capacity.div_ceil(64)],
            count: 0,
        }
    }

    /// Adds an offset; returns whether it was new.
    pub fn insert(&mut self, offset: PointOffset) -> bool {
        let (w, b) = (offset as usize / 64, offset % 64);
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let new = self.words[w] & (1 << b) == 0;
        self.words[w] |= 1 << b;
        self.count += new as usize;
        new
    }

    /// Removes an offset; returns whether it was present.
    pub fn remove(&mut self, offset: PointOffset) -> bool {
        let (w, b) = (offset as usize / 64, offset % 64);
        let Some(word) = self.words.get_mut(w) else {
            return false;
        };
        let present = *word & (1 << b) != 0;
        *word &= !(1 << b);
        self.count -= present as usize;
        present
    }

    /// Whether the offset is in the set.
    #[inline]
    pub fn contains(&self, offset: PointOffset) -> bool {
        self.words
            .get(offset as usize / 64)
            .is_some_and(|w| w >> (offset % 64) & 1 == 1)
    }

    /// Number of offsets in the set.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the set's words occupy.
    pub fn capacity_bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// The offsets, in increasing order.
    pub fn iter(&self) -> AllowedIter<'_> {
        AllowedIter {
            words: &self.words,
            next_word: 0,
            base: 0,
            bits: 0,
        }
    }
}

/// The offsets of an [`AllowedSet`], in increasing order: one word at a time, skipping empty
/// words in a tight loop (a narrow filter's set is mostly empty words).
#[derive(Debug, Clone)]
pub struct AllowedIter<'a> {
    words: &'a [u64],
    next_word: usize,
    base: PointOffset,
    bits: u64,
}

impl Iterator for AllowedIter<'_> {
    type Item = PointOffset;

    #[inline]
    fn next(&mut self) -> Option<PointOffset> {
        while self.bits == 0 {
            let &word = self.words.get(self.next_word)?;
            self.bits = word;
            self.base = (self.next_word * 64) as PointOffset;
            self.next_word += 1;
        }
        let b = self.bits.trailing_zeros();
        self.bits &= self.bits - 1;
        Some(self.base + b)
    }
}

impl FromIterator<PointOffset> for AllowedSet {
    fn from_iter<I: IntoIterator<Item = PointOffset>>(iter: I) -> Self {
        let mut set = AllowedSet::default();
        iter.into_iter().for_each(|o| {
            set.insert(o);
        });
        set
    }
}

impl PointFilter for AllowedSet {
    fn allows(&self, offset: PointOffset) -> bool {
        self.contains(offset)
    }

    fn cardinality_estimate(&self) -> Option<usize> {
        Some(self.count)
    }

    fn allowed_offsets(&self) -> Option<Box<dyn Iterator<Item = PointOffset> + '_>> {
        Some(Box::new(self.iter()))
    }

    fn as_bitset(&self) -> Option<&AllowedSet> {
        Some(self)
    }
}
