//! CAGRA's graph optimisation (Ootomo et al., section 3.2): the initial k-NN graph pruned by
//! rank-based reordering, then reverse edges added, to a graph of exactly `degree` distinct
//! out-links per node.
//!
//! * **Rank-based reordering.** An edge `A → B` at rank `r` of `A`'s list is *detourable*
//!   through `D` when `D` is at a rank below `r` in `A`'s list and `B` at a rank below `r`
//!   in `D`'s: a walk from `A` reaches `B` through `D` anyway. Each node keeps the `degree`
//!   edges with the fewest detours, ties broken by rank. Ranks stand in for distances, so no
//!   distance is measured here.
//! * **Reverse edges.** The first half of each pruned list is kept; the rest is filled with
//!   reverse edges (nodes whose pruned lists point here, in rank order), then with the pruned
//!   list's own tail. Reverse edges make nodes reachable that few lists point to.

use rayon::prelude::*;

/// The rank of each node in the list being pruned, by node id (`NONE` elsewhere): one
/// array per thread, set for a list's `k` entries and reset after, so that each of the `k²`
/// lookups of the detour count is one load from an array that stays in cache.
struct Ranks(Vec<u16>);

impl Ranks {
    const NONE: u16 = u16::MAX;
}

/// Prunes `knn` (`n · k`, rows sorted closest first, distinct, no self-loops) to `degree`
/// links per node by rank-based reordering; rows of the result are in the order kept.
pub(crate) fn prune(knn: &[u32], k: usize, degree: usize) -> Vec<u32> {
    let n = knn.len() / k;
    let mut out = vec![0u32; n * degree];
    out.par_chunks_mut(degree).enumerate().for_each_init(
        || {
            (
                Ranks(vec![Ranks::NONE; n]),
                vec![0u32; k],
                Vec::with_capacity(k),
            )
        },
        |(ranks, detours, order), (a, row)| {
            let list = &knn[a * k..(a + 1) * k];
            for (r, &b) in list.iter().enumerate() {
                ranks.0[b as usize] = r as u16;
            }
            detours.fill(0);
            // For each D at rank `rd` of A's list and each B at rank `rb` of D's list, B
            // at rank `r` of A's list is detourable when max(rd, rb) < r.
            for (rd, &d) in list.iter().enumerate() {
                if let Some(&ahead) = list.get(rd + 2) {
                    let next = &knn[ahead as usize * k..];
                    quant::kernels::prefetch(next.as_ptr().cast(), k * 4);
                }
                let d_list = &knn[d as usize * k..(d as usize + 1) * k];
                for (rb, &b) in d_list.iter().enumerate() {
                    let r = ranks.0[b as usize] as usize;
                    if r != Ranks::NONE as usize && rd.max(rb) < r {
                        detours[r] += 1;
                    }
                }
            }
            for &b in list {
                ranks.0[b as usize] = Ranks::NONE;
            }
            order.clear();
            order.extend(0..k);
            order.sort_by_key(|&r| (detours[r], r));
            for (slot, &r) in row.iter_mut().zip(order.iter()) {
                *slot = list[r];
            }
        },
    );
    out
}

/// Adds reverse edges to a pruned graph (`n · degree`), keeping every row `degree` distinct
/// links long.
pub(crate) fn add_reverse_edges(pruned: &[u32], degree: usize) -> Vec<u32> {
    let n = pruned.len() / degree;
    // Reverse lists, filled rank by rank so that a node's reverse list holds the nodes that
    // rank it highest: up to `degree` per node.
    let mut reverse: Vec<Vec<u32>> = vec![Vec::new(); n];
    for rank in 0..degree {
        for a in 0..n {
            let b = pruned[a * degree + rank] as usize;
            if reverse[b].len() < degree {
                reverse[b].push(a as u32);
            }
        }
    }
    let protected = (degree / 2).max(1);
    let mut out = vec![0u32; n * degree];
    out.par_chunks_mut(degree)
        .zip(reverse.par_iter())
        .enumerate()
        .for_each(|(a, (row, rev))| {
            let own = &pruned[a * degree..(a + 1) * degree];
            let mut len = 0;
            let mut push = |row: &mut [u32], id: u32| {
                if len < degree && id as usize != a && !row[..len].contains(&id) {
                    row[len] = id;
                    len += 1;
                }
            };
            for &id in &own[..protected.min(degree)] {
                push(row, id);
            }
            for &id in rev {
                push(row, id);
            }
            for &id in own {
                push(row, id);
            }
            debug_assert_eq!(len, degree, "a pruned row holds `degree` distinct links");
        });
    out
}
