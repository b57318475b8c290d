//! The initial k-NN graph: exact by brute force, or approximate by NN-descent.
//!
//! Both return `n · k` ids, each node's row sorted closest first, `k` distinct neighbours and
//! never the node itself (the caller guarantees `n > k`).

use crate::CagraConfig;
use quant::{kernels, Metric};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Rows of the brute-force build measured against one block of points at a time, so that the
/// block stays in cache while every row of the batch passes over it.
const BRUTE_BLOCK: usize = 1024;
/// A flag bit on an id in an NN-descent list: the entry is new (not yet joined).
const NEW: u32 = 1 << 31;

/// Exact `k` nearest neighbours of every point of `data` (`n · dim`, prepared).
pub(crate) fn brute_force(data: &[f32], dim: usize, metric: Metric, k: usize) -> Vec<u32> {
    let n = data.len() / dim;
    let kern = kernels();
    let mut out = vec![0u32; n * k];
    out.par_chunks_mut(k * 64)
        .enumerate()
        .for_each(|(chunk, rows_out)| {
            let first = chunk * 64;
            let rows = rows_out.len() / k;
            // A bounded max-heap per row would cost a branch per pair; a sorted buffer of `k`
            // with a threshold rejects almost every pair with one comparison.
            let mut best: Vec<Vec<(f32, u32)>> = vec![Vec::with_capacity(k + 1); rows];
            for block in (0..n).step_by(BRUTE_BLOCK) {
                let end = (block + BRUTE_BLOCK).min(n);
                for (r, list) in best.iter_mut().enumerate() {
                    let i = first + r;
                    let v = &data[i * dim..(i + 1) * dim];
                    for j in block..end {
                        if j == i {
                            continue;
                        }
                        let d = metric.distance(kern, v, &data[j * dim..(j + 1) * dim]);
                        if list.len() < k || d < list[k - 1].0 {
                            let pos = list.partition_point(|e| (e.0, e.1) < (d, j as u32));
                            list.insert(pos, (d, j as u32));
                            list.truncate(k);
                        }
                    }
                }
            }
            for (r, list) in best.into_iter().enumerate() {
                for (slot, (_, id)) in rows_out[r * k..(r + 1) * k].iter_mut().zip(list) {
                    *slot = id;
                }
            }
        });
    out
}

/// A small, fast, deterministic generator (splitmix64) for sampling.
#[derive(Clone)]
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// Uniform in `0 .. bound` (`bound > 0`).
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        (((self.next() >> 32) * bound as u64) >> 32) as usize
    }
}

/// A distance as a `u32` that orders as the distance does (negative ones included): the sign
/// bit flipped for positives, every bit for negatives.
#[inline]
fn order_key(d: f32) -> u32 {
    let b = d.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Every node's neighbour list during NN-descent, in one arena: row `i` is entries
/// `i·k .. (i+1)·k`, sorted closest first, each one `u64` (the distance's [`order_key`] above
/// the id, which carries the [`NEW`] flag until it has taken part in a local join). A row is
/// changed only under its node's lock; the entries are atomics so that rows can be shared
/// between threads without `unsafe`, and relaxed loads and stores compile to plain moves.
/// One arena, rather than a list per node, lets a join prefetch every row it will touch by
/// address (the profile of separate lists was the misses on their first reads).
struct Lists {
    k: usize,
    entries: Vec<AtomicU64>,
    locks: Vec<Mutex<()>>,
}

impl Lists {
    #[inline]
    fn id(entry: u64) -> u32 {
        entry as u32 & !NEW
    }

    #[inline]
    fn row(&self, node: u32) -> &[AtomicU64] {
        &self.entries[node as usize * self.k..(node as usize + 1) * self.k]
    }

    /// The order key of a row's farthest entry.
    #[inline]
    fn worst(row: &[AtomicU64]) -> u32 {
        (row[row.len() - 1].load(Ordering::Relaxed) >> 32) as u32
    }

    /// Under `node`'s lock: takes `id` at distance key `key` if it is closer than the
    /// farthest entry and not already held; returns the new farthest key if it was taken.
    fn offer(&self, node: u32, id: u32, key: u32) -> Option<u32> {
        let _guard = lock(&self.locks[node as usize]);
        let row = self.row(node);
        let k = row.len();
        if key >= Self::worst(row)
            || row
                .iter()
                .any(|e| Self::id(e.load(Ordering::Relaxed)) == id)
        {
            return None;
        }
        let pos = row.partition_point(|e| (e.load(Ordering::Relaxed) >> 32) as u32 <= key);
        for i in (pos + 1..k).rev() {
            row[i].store(row[i - 1].load(Ordering::Relaxed), Ordering::Relaxed);
        }
        row[pos].store((key as u64) << 32 | (id | NEW) as u64, Ordering::Relaxed);
        Some(Self::worst(row))
    }
}

/// Approximate `k` nearest neighbours of every point by NN-descent: every node starts with
/// `k` random neighbours; each iteration joins, for every node, its sampled new neighbours
/// with each other and with its old ones (reverse neighbours included), offering each pair to
/// both lists, until an iteration improves fewer than `termination · n · k` entries.
///
/// Lists are locked one at a time (a pair offers to one list, then the other), so no lock
/// order can deadlock; the farthest distance of each list is mirrored in an atomic, so most
/// offers are rejected without taking the lock.
pub(crate) fn nn_descent(
    data: &[f32],
    dim: usize,
    metric: Metric,
    k: usize,
    config: &CagraConfig,
) -> Vec<u32> {
    let max_candidates = config.nn_descent_max_candidates;
    let (iterations, termination, seed) = (
        config.nn_descent_niter,
        config.nn_descent_termination,
        config.seed,
    );
    let n = data.len() / dim;
    let kern = kernels();
    let vector = |i: u32| &data[i as usize * dim..(i as usize + 1) * dim];
    let distance = |a: u32, b: u32| metric.distance(kern, vector(a), vector(b));

    // Random distinct neighbours to start.
    let rows: Vec<Vec<u64>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng = SplitMix(seed ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407));
            let mut ids: Vec<u32> = Vec::with_capacity(k);
            while ids.len() < k {
                let j = rng.below(n) as u32;
                if j as usize != i && !ids.contains(&j) {
                    ids.push(j);
                }
            }
            let mut entries: Vec<u64> = ids
                .iter()
                .map(|&j| (order_key(distance(i as u32, j)) as u64) << 32 | (j | NEW) as u64)
                .collect();
            entries.sort_unstable();
            entries
        })
        .collect();
    let lists = Lists {
        k,
        entries: rows.into_iter().flatten().map(AtomicU64::new).collect(),
        locks: (0..n).map(|_| Mutex::new(())).collect(),
    };
    let worst: Vec<AtomicU32> = (0..n as u32)
        .map(|i| AtomicU32::new(Lists::worst(lists.row(i))))
        .collect();
    let offer = |to: u32, id: u32, d: f32| -> bool {
        let key = order_key(d);
        if key >= worst[to as usize].load(Ordering::Relaxed) {
            return false;
        }
        match lists.offer(to, id, key) {
            Some(w) => {
                worst[to as usize].store(w, Ordering::Relaxed);
                true
            }
            None => false,
        }
    };

    let stop_below = (termination as f64 * n as f64 * k as f64) as usize;
    for iteration in 0..iterations {
        // Sample each node's new entries (the closest `max_candidates`, flagged old from now
        // on) and its old ones.
        let sampled: Vec<(Vec<u32>, Vec<u32>)> = (0..n as u32)
            .into_par_iter()
            .map(|node| {
                let _guard = lock(&lists.locks[node as usize]);
                let mut new = Vec::with_capacity(max_candidates);
                let mut old = Vec::with_capacity(max_candidates);
                for slot in lists.row(node) {
                    let entry = slot.load(Ordering::Relaxed);
                    if entry as u32 & NEW != 0 {
                        if new.len() < max_candidates {
                            new.push(Lists::id(entry));
                            slot.store(entry & !(NEW as u64), Ordering::Relaxed);
                        }
                    } else if old.len() < max_candidates {
                        old.push(Lists::id(entry));
                    }
                }
                (new, old)
            })
            .collect();
        // Reverse neighbours, `max_candidates` of each kind at most per node, chosen by
        // reservoir sampling so that low ids do not fill every reservoir first.
        let mut rev_new: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut rev_old: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut seen_new = vec![0u32; n];
        let mut seen_old = vec![0u32; n];
        let mut rng = SplitMix(seed ^ 0xD1B5_4A32_D192_ED03 ^ iteration as u64);
        for (v, (new, old)) in sampled.iter().enumerate() {
            for (targets, seen, sources) in [
                (&mut rev_new, &mut seen_new, new),
                (&mut rev_old, &mut seen_old, old),
            ] {
                for &u in sources {
                    let u = u as usize;
                    seen[u] += 1;
                    if targets[u].len() < max_candidates {
                        targets[u].push(v as u32);
                    } else {
                        let r = rng.below(seen[u] as usize);
                        if r < max_candidates {
                            targets[u][r] = v as u32;
                        }
                    }
                }
            }
        }
        drop((seen_new, seen_old));

        let updates = AtomicUsize::new(0);
        sampled
            .par_iter()
            .zip(rev_new.par_iter().zip(rev_old.par_iter()))
            .for_each(|((new, old), (rnew, rold))| {
                let mut news: Vec<u32> = new.iter().chain(rnew).copied().collect();
                news.sort_unstable();
                news.dedup();
                let mut olds: Vec<u32> = old.iter().chain(rold).copied().collect();
                olds.sort_unstable();
                olds.dedup();
                olds.retain(|o| news.binary_search(o).is_err());
                // Every member's vector, list and bound is read again and again by the join:
                // start their loads together instead of waiting on each at its first use.
                for &m in news.iter().chain(olds.iter()) {
                    let v = vector(m);
                    quant::kernels::prefetch(v.as_ptr().cast(), v.len() * 4);
                    let row = lists.row(m);
                    quant::kernels::prefetch(row.as_ptr().cast(), row.len() * 8);
                    quant::kernels::prefetch((&worst[m as usize] as *const AtomicU32).cast(), 1);
                }
                let mut count = 0;
                for (x, &a) in news.iter().enumerate() {
                    for &b in news[x + 1..].iter().chain(olds.iter()) {
                        let d = distance(a, b);
                        count += offer(a, b, d) as usize;
                        count += offer(b, a, d) as usize;
                    }
                }
                updates.fetch_add(count, Ordering::Relaxed);
            });
        if updates.into_inner() <= stop_below {
            break;
        }
    }
    let mut out = vec![0u32; n * k];
    out.par_iter_mut()
        .zip(lists.entries.par_iter())
        .for_each(|(slot, entry)| *slot = Lists::id(entry.load(Ordering::Relaxed)));
    out
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A list stays consistent whatever a panicking holder did (entries are written whole).
    m.lock().unwrap_or_else(|e| e.into_inner())
}
