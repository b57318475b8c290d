//! Exact search by scanning every live vector.

use crate::error::{check_vector, prepared_vector};
use crate::{
    AllowedSet, DenseVectors, MemoryUsage, PointFilter, PointOffset, Result, ScoredOffset,
    SearchParams, TopK, VectorIndex, VectorIndexWrite,
};
use quant::Metric;
use std::sync::RwLock;

/// Exact (brute-force) search over full-precision vectors.
///
/// The reference every approximate index is tested against, and the search of appendable
/// segments and of filters that leave few points.
#[derive(Debug)]
pub struct FlatIndex {
    inner: RwLock<Inner>,
}

#[derive(Debug)]
struct Inner {
    vectors: DenseVectors,
    live: AllowedSet,
}

impl FlatIndex {
    /// An empty index.
    pub fn new(dim: usize, metric: Metric) -> FlatIndex {
        FlatIndex {
            inner: RwLock::new(Inner {
                vectors: DenseVectors::new(dim, metric),
                live: AllowedSet::default(),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated (every write is a
        // single `set` plus a bit), so a poisoned lock is still consistent.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl VectorIndex for FlatIndex {
    fn dim(&self) -> usize {
        self.read().vectors.dim()
    }

    fn metric(&self) -> Metric {
        self.read().vectors.metric()
    }

    fn len(&self) -> usize {
        self.read().live.len()
    }

    fn contains(&self, offset: PointOffset) -> bool {
        self.read().live.contains(offset)
    }

    fn search(
        &self,
        query: &[f32],
        params: &SearchParams,
        filter: Option<&dyn PointFilter>,
    ) -> Result<Vec<ScoredOffset>> {
        params.validate()?;
        let inner = self.read();
        let prepared = prepared_vector(query, inner.vectors.dim(), inner.vectors.metric())?;
        let mut top = TopK::new(params.limit);
        let max_distance = params.max_distance.unwrap_or(f32::INFINITY);
        let mut offer = |offset: PointOffset| {
            let d = inner.vectors.distance(&prepared, offset);
            if d <= max_distance {
                top.push(ScoredOffset::new(offset, d));
            }
        };
        // Walk whichever set is smaller: the filter's own list when it is the smaller and can
        // be listed, else every live point.
        let listed = filter
            .filter(|f| {
                f.cardinality_estimate()
                    .is_some_and(|c| c < inner.live.len())
            })
            .and_then(|f| f.allowed_offsets());
        match listed {
            Some(allowed) => allowed
                .filter(|&o| inner.live.contains(o))
                .for_each(&mut offer),
            None => inner
                .live
                .iter()
                .filter(|&o| filter.is_none_or(|f| f.allows(o)))
                .for_each(&mut offer),
        }
        Ok(top.into_sorted_vec())
    }

    fn memory_usage(&self) -> MemoryUsage {
        let inner = self.read();
        MemoryUsage {
            points: inner.live.len(),
            vector_bytes: inner.vectors.memory_bytes(),
            vector_bytes_on_disk: 0,
            index_bytes: 0,
            other_bytes: inner.live.len().div_ceil(8),
        }
    }
}

impl VectorIndexWrite for FlatIndex {
    fn insert(&self, offset: PointOffset, vector: &[f32]) -> Result<()> {
        let mut inner = self.write();
        check_vector(vector, inner.vectors.dim())?;
        // Offsets are dense: a point replaces one or takes the next free slot, so a stray
        // offset cannot make the store allocate billions of empty slots.
        let slots = inner.vectors.len();
        if offset as usize > slots {
            return Err(crate::IndexError::OffsetOutOfRange {
                offset,
                limit: slots + 1,
            });
        }
        inner.vectors.set(offset, vector);
        inner.live.insert(offset);
        Ok(())
    }

    fn delete(&self, offset: PointOffset) -> Result<bool> {
        Ok(self.write().live.remove(offset))
    }
}
