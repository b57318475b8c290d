//! Keeping every point reachable and findable: relinking after deletes, linking orphans, the
//! findability check of new nodes, and the choice of a live entry point.

use super::*;

impl HnswIndex {
    /// Repairs the links of live nodes that point at deleted ones: each such list is rebuilt,
    /// with the link heuristic, from its live neighbours and the live nodes reachable through
    /// chains of deleted ones, so the graph stays navigable without the deleted nodes. Then
    /// moves the entry point off a deleted node and links every live node that became
    /// unreachable. Returns the number of lists rebuilt. Safe to run while searches and
    /// inserts go on.
    pub fn repair(&self) -> usize {
        if !self.config.has_graph() {
            return 0;
        }
        let end = self.end.load(Ordering::Acquire);
        let rebuilt = AtomicUsize::new(0);
        (0..end)
            .into_par_iter()
            .for_each_init(Vec::new, |buf, node| {
                if self.arena.state(node) != SlotState::Live {
                    return;
                }
                let levels = self.node_levels(node);
                for level in 0..=levels {
                    self.neighbours(node, level, buf);
                    if buf.iter().all(|&n| self.arena.state(n) == SlotState::Live) {
                        continue;
                    }
                    // Candidates: live neighbours, and the live nodes reachable through chains of
                    // deleted ones (breadth-first, a bounded number of deleted nodes), so that
                    // whatever the deleted nodes connected stays connected even when most of a
                    // neighbourhood is gone.
                    let mut pool: Vec<u32> = Vec::new();
                    let mut seen: std::collections::HashSet<u32> =
                        std::collections::HashSet::from([node]);
                    let mut queue: std::collections::VecDeque<u32> = buf.iter().copied().collect();
                    let mut expanded = 0;
                    let mut next = Vec::new();
                    while let Some(n) = queue.pop_front() {
                        if !seen.insert(n) {
                            continue;
                        }
                        match self.arena.state(n) {
                            SlotState::Live => pool.push(n),
                            SlotState::Deleted if expanded < REPAIR_EXPANSION => {
                                expanded += 1;
                                self.neighbours(n, level, &mut next);
                                queue.extend(next.iter().copied());
                            }
                            _ => {}
                        }
                    }
                    let kept = self.select_among(node, &pool, level);
                    let _guard = self.lock_links(node);
                    self.set_neighbours(node, level, &kept);
                    rebuilt.fetch_add(1, Ordering::Relaxed);
                }
            });
        if let Some((entry, _)) = self.entry() {
            if self.arena.state(entry) != SlotState::Live {
                self.choose_live_entry();
            }
        }
        self.link_orphans(end);
        if self.link_unfindable(0, end) > 0 {
            self.link_orphans(end);
        }
        rebuilt.into_inner()
    }

    /// Makes every live node findable by a walk for its own vector with the default `ef`
    /// (checked with that walk, or with a narrower one where that already finds the node).
    ///
    /// The link heuristic keeps a candidate only if no kept neighbour is closer to it. A node
    /// alone in its neighbourhood (an outlier of real embeddings: its nearest neighbours are
    /// far and in different directions) keeps links to them, but a walk for it can settle on
    /// another node nearby that it never linked to, with nothing better in reach: the node is
    /// reachable, yet not found. This happens on one thread as on many (glove-50, when a new
    /// node chose `2·m` level-0 links: 15 to 24 of 390,000 points). The repair searches for
    /// every node with its own vector; when the walk ends elsewhere, the closest node it found
    /// gets a link to the node (in place of its farthest link when its list is full), so the
    /// same walk now finds it. A greedy walk on level 0 is tried first and spares the full walk
    /// when it reaches the node (two thirds of them on glove), then a walk with an `ef` of 16
    /// (on glove, fewer than 10,000 nodes were left for the full walk). Later rounds search
    /// again for every node relinked or displaced in the round before, since the repairs of
    /// one round run in parallel and change each other's walks; they stop when a round finds
    /// every node it checks.
    pub(crate) fn link_unfindable(&self, from: u32, end: u32) -> usize {
        let mut relinked = 0;
        let mut check: Vec<u32> = (from..end).collect();
        let mut screen = true;
        for _round in 0..UNFINDABLE_ROUNDS {
            let touched = Mutex::new(Vec::new());
            relinked += check
                .par_iter()
                .map_init(
                    || (Vec::new(), Vec::new()),
                    |(mine, theirs), &node| {
                        self.relink_if_unfindable(node, screen, mine, theirs, &touched)
                    },
                )
                .filter(|&r| r)
                .count();
            check = touched.into_inner().unwrap_or_else(|e| e.into_inner());
            if check.is_empty() {
                break;
            }
            check.sort_unstable();
            check.dedup();
            screen = false;
        }
        relinked
    }

    /// One node of [`HnswIndex::link_unfindable`]: `screen` skips the full walk when the
    /// greedy walk, or failing that a walk with `ef` [`SCREEN_EF`], finds the node. Returns
    /// whether a link was added; then the node, and a node that lost a link to make room, are
    /// pushed to `touched`.
    pub(super) fn relink_if_unfindable(
        &self,
        node: u32,
        screen: bool,
        mine: &mut Vec<u32>,
        theirs: &mut Vec<u32>,
        touched: &Mutex<Vec<u32>>,
    ) -> bool {
        if self.arena.state(node) != SlotState::Live {
            return false;
        }
        let (Some(v), Some((entry, top))) = (self.full_vector_or_half(node), self.entry()) else {
            return false;
        };
        let measure = |n: u32| self.measure_exact(&v, n);
        let start = self.descend(&measure, entry, top, 0);
        if screen {
            // A greedy walk on level 0 that reaches the node is the first part of what the
            // full walk does, at a fraction of its cost: most nodes stop here.
            let reached = self.greedy(&measure, start, 0, mine);
            if reached.offset == node {
                return false;
            }
        }
        let walk = |ef: usize| {
            self.search_level(
                &measure,
                &|n| self.prefetch_exact(n),
                &[start.offset],
                ef,
                0,
            )
        };
        // Found when first or tied with the first (an exact duplicate may come first).
        let finds_node = |found: &[Candidate]| {
            found.first().is_some_and(|first| {
                found
                    .iter()
                    .take_while(|c| c.distance <= first.distance)
                    .any(|c| c.offset == node)
            })
        };
        if screen && self.config.ef_search > SCREEN_EF && finds_node(&walk(SCREEN_EF)) {
            // A narrower walk that finds the node: the walk with the default `ef` takes the
            // same closest-first path, keeps more candidates and stops later, so it finds the
            // node too (not a theorem: its wider candidate set could in principle crowd out
            // the node the narrow walk went through; the reachability tests and
            // `--self-check` search with the default `ef` itself). Most of the nodes the greedy
            // walk misses stop here, at a fraction of the full walk's cost.
            return false;
        }
        let found = walk(self.config.ef_search);
        let Some(first) = found.first() else {
            return false;
        };
        if finds_node(&found) {
            return false;
        }
        let Some(displaced) = self.link_from(first.offset, node, theirs) else {
            return false;
        };
        let mut touched = touched.lock().unwrap_or_else(|e| e.into_inner());
        touched.push(node);
        touched.extend(displaced);
        true
    }

    /// A node's stored vector as `f32` (converted from `f16` where that is the storage).
    pub(super) fn full_vector_or_half(&self, node: u32) -> Option<Vec<f32>> {
        match &self.codec {
            Codec::F16 => self
                .half_vector(node)
                .map(|v| v.iter().map(|h| h.to_f32()).collect()),
            _ => self.full_vector(node).map(<[f32]>::to_vec),
        }
    }

    /// Makes every live node reachable from the entry point on level 0.
    ///
    /// The link heuristic can leave a node, or a small group of nodes linking only to each
    /// other, with no path from the rest of the graph (more so for inner product, which is not
    /// a metric). A breadth-first pass from the entry finds them; each gets a link from the
    /// closest reachable live node (replacing that node's farthest link when its list is
    /// full), and the pass repeats, a few rounds at most, since a replaced link can itself cut
    /// a node off.
    pub(crate) fn link_orphans(&self, end: u32) {
        for _round in 0..4 {
            let Some((entry, _)) = self.entry() else {
                return;
            };
            let mut reached = vec![false; end as usize];
            let mut stack = vec![entry];
            let mut buf = Vec::new();
            let mut theirs = Vec::new();
            let mut mark = |start: u32, reached: &mut Vec<bool>, stack: &mut Vec<u32>| {
                stack.clear();
                stack.push(start);
                while let Some(n) = stack.pop() {
                    let Some(slot) = reached.get_mut(n as usize) else {
                        continue;
                    };
                    if *slot {
                        continue;
                    }
                    *slot = true;
                    self.neighbours(n, 0, &mut buf);
                    stack.extend(buf.iter().copied());
                }
            };
            mark(entry, &mut reached, &mut stack);
            let unreached: Vec<u32> = (0..end)
                .filter(|&n| !reached[n as usize] && self.arena.state(n) == SlotState::Live)
                .collect();
            if unreached.is_empty() {
                return;
            }
            for node in unreached {
                if reached[node as usize] {
                    continue;
                }
                let base = self.node_vector(node);
                if base.is_none() {
                    continue;
                }
                let measure = |n: u32| {
                    let live = self.arena.state(n) == SlotState::Live;
                    let d = self.pair_distance(base, self.node_vector(n));
                    d.is_finite()
                        .then_some((d, live && reached[n as usize] && n != node))
                };
                let found = self.search_level(
                    &measure,
                    &|n| self.prefetch_exact(n),
                    &[entry],
                    self.config.ef_construct,
                    0,
                );
                let Some(host) = found.first().map(|c| c.offset) else {
                    continue;
                };
                self.link_from(host, node, &mut theirs);
                mark(node, &mut reached, &mut stack);
            }
        }
    }

    pub(super) fn node_levels(&self, node: u32) -> usize {
        let upper = self.upper.read().unwrap_or_else(|e| e.into_inner());
        upper
            .get(&node)
            .map_or(0, |w| w.len() / (1 + self.config.m))
    }

    /// Whether a node has level-0 links: every node but a lone first one has some once its
    /// insert wrote its lists, and none before. An insert still running is not a safe entry
    /// (a walk from it would stop at once); the repairs may still link to such a node, which
    /// costs a walk nothing (it measures the node and goes on), and its insert links it.
    pub(super) fn is_linked(&self, node: u32) -> bool {
        self.arena
            .links(node)
            .first()
            .is_some_and(|count| count.load(Ordering::Acquire) > 0)
    }

    /// Makes the live node with the highest level the entry point (or empties the entry),
    /// among nodes whose inserts have written their links (a lone node otherwise).
    pub(super) fn choose_live_entry(&self) {
        let _guard = self.entry_lock.lock().unwrap_or_else(|e| e.into_inner());
        if !self.config.has_graph() {
            // Any live node serves (searches scan); looking on from the last entry keeps
            // deletes in offset order linear rather than quadratic.
            let end = self.end.load(Ordering::Acquire);
            let last = self.entry().map_or(0, |(e, _)| e);
            let live = (last..end)
                .chain(0..last)
                .find(|&n| self.arena.state(n) == SlotState::Live);
            self.entry
                .store(live.map_or(NO_ENTRY, u64::from), Ordering::Release);
            return;
        }
        let best_upper = {
            let upper = self.upper.read().unwrap_or_else(|e| e.into_inner());
            upper
                .iter()
                .filter(|(&n, _)| self.arena.state(n) == SlotState::Live && self.is_linked(n))
                .map(|(&n, w)| (w.len() / (1 + self.config.m), n))
                .max()
        };
        let end = self.end.load(Ordering::Acquire);
        let choice = best_upper
            .or_else(|| {
                (0..end)
                    .find(|&n| self.arena.state(n) == SlotState::Live && self.is_linked(n))
                    .map(|n| (0, n))
            })
            .or_else(|| {
                (0..end)
                    .find(|&n| self.arena.state(n) == SlotState::Live)
                    .map(|n| (0, n))
            });
        match choice {
            Some((level, n)) => self
                .entry
                .store((level as u64) << 32 | n as u64, Ordering::Release),
            None => self.entry.store(NO_ENTRY, Ordering::Release),
        }
    }
}
