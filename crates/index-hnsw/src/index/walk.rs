//! The graph walks every insert and search is made of: the greedy descent and the
//! beam search of one level, plain and filter-first.

use super::*;

impl HnswIndex {
    /// A greedy walk on one upper level: the closest node reachable from `start`.
    pub(super) fn greedy<M: Fn(u32) -> Option<(f32, bool)>>(
        &self,
        measure: &M,
        mut best: Candidate,
        level: usize,
        buf: &mut Vec<u32>,
    ) -> Candidate {
        loop {
            let mut improved = false;
            self.neighbours(best.offset, level, buf);
            for &n in buf.iter() {
                if let Some((d, _)) = measure(n) {
                    let c = Candidate::new(n, d);
                    if c < best {
                        best = c;
                        improved = true;
                    }
                }
            }
            if !improved {
                return best;
            }
        }
    }

    /// Best-first search of one level (Algorithm 2 of the paper): up to `ef` closest nodes.
    ///
    /// `measure` gives a node's distance and whether it may be a result (live, allowed by the
    /// filter), or `None` for a node not yet published. The walk goes through every node, so a
    /// restrictive filter or deleted nodes do not cut the graph apart.
    pub(super) fn search_level<M: Fn(u32) -> Option<(f32, bool)>, P: Fn(u32)>(
        &self,
        measure: &M,
        prefetch: &P,
        entries: &[u32],
        ef: usize,
        level: usize,
    ) -> Vec<Candidate> {
        with_walk_state(
            self.end.load(Ordering::Acquire) as usize,
            |visited, frontier, buf| {
                for &e in entries {
                    if visited.insert(e) {
                        if let Some((d, ok)) = measure(e) {
                            frontier.candidates.push(Reverse(Candidate::new(e, d)));
                            if ok {
                                frontier.results.push(Candidate::new(e, d));
                            }
                        }
                    }
                }
                while frontier.results.len() > ef {
                    frontier.results.pop();
                }
                while let Some(c) = frontier.next(ef) {
                    self.neighbours(c.offset, level, buf);
                    buf.retain(|&n| visited.insert(n));
                    // Prefetch a few nodes ahead of the one being measured (what `measure`
                    // reads): enough to hide the memory latency, few enough not to overflow the
                    // CPU's miss buffers.
                    for &n in buf.iter().take(PREFETCH_AHEAD) {
                        prefetch(n);
                    }
                    for (k, &n) in buf.iter().enumerate() {
                        if let Some(&ahead) = buf.get(k + PREFETCH_AHEAD) {
                            prefetch(ahead);
                        }
                        if let Some((d, ok)) = measure(n) {
                            frontier.offer(n, d, ok, ef);
                        }
                    }
                    // The closest candidate is most likely expanded next: start loading its
                    // links while the heap is popped.
                    if level == 0 {
                        if let Some(Reverse(next)) = frontier.candidates.peek() {
                            self.arena.prefetch_links(next.offset);
                        }
                    }
                }
                frontier.take_sorted()
            },
        )
    }

    /// Best-first search of level 0 that moves only through nodes `allowed` lets through
    /// (the idea of ACORN-1, Patel et al., SIGMOD 2024): a disallowed neighbour is not
    /// measured but looked through, its own allowed neighbours taken in its place, up to the
    /// layer's link count per expansion. Distances are computed for allowed nodes only, and
    /// the stopping rule sees only allowed candidates, so a filter that passes a few percent
    /// of the points neither cuts the walk off nor lets it crawl the whole graph. The start
    /// node may be disallowed: it is expanded, never returned.
    pub(super) fn search_level_filter_first<M, A>(
        &self,
        measure: &M,
        allowed: &A,
        start: u32,
        ef: usize,
    ) -> Vec<Candidate>
    where
        M: Fn(u32) -> Option<(f32, bool)>,
        A: Fn(u32) -> bool,
    {
        let fan_out = self.config.m0();
        with_walk_state(
            self.end.load(Ordering::Acquire) as usize,
            |visited, frontier, buf| {
                let mut hop = Vec::with_capacity(fan_out);
                let mut next: Vec<u32> = Vec::with_capacity(fan_out);
                let mut through: Vec<u32> = Vec::with_capacity(fan_out);
                visited.insert(start);
                if let Some((d, ok)) = measure(start) {
                    frontier.candidates.push(Reverse(Candidate::new(start, d)));
                    if ok {
                        frontier.results.push(Candidate::new(start, d));
                    }
                }
                while let Some(c) = frontier.next(ef) {
                    self.neighbours(c.offset, 0, buf);
                    next.clear();
                    through.clear();
                    // Allowed neighbours first; the disallowed ones are looked through only
                    // while the expansion has fewer than `fan_out` allowed nodes, and marked
                    // visited only when they are (a later expansion may look through the rest).
                    for &n in buf.iter() {
                        if visited.contains(n) {
                            continue;
                        }
                        if allowed(n) {
                            visited.insert(n);
                            next.push(n);
                            self.arena.prefetch(n);
                        } else {
                            // Only the first few are likely to be looked through; prefetching
                            // every one would overflow the CPU's miss buffers.
                            if through.len() < LOOK_THROUGH_PREFETCH {
                                self.arena.prefetch_links(n);
                            }
                            through.push(n);
                        }
                    }
                    for &n in through.iter() {
                        if next.len() >= fan_out {
                            break;
                        }
                        if !visited.insert(n) {
                            continue;
                        }
                        self.neighbours(n, 0, &mut hop);
                        for &h in &hop {
                            if next.len() >= fan_out {
                                break;
                            }
                            // The visited test first: it is one bit, a predicate may not be.
                            if !visited.contains(h) && allowed(h) {
                                visited.insert(h);
                                next.push(h);
                                self.arena.prefetch(h);
                            }
                        }
                    }
                    for &n in &next {
                        if let Some((d, ok)) = measure(n) {
                            frontier.offer(n, d, ok, ef);
                        }
                    }
                    if let Some(Reverse(next)) = frontier.candidates.peek() {
                        self.arena.prefetch_links(next.offset);
                    }
                }
                frontier.take_sorted()
            },
        )
    }
}
