//! Inserting a node: its levels descended, its links chosen by the heuristic and written
//! before any node links back to it, then the backlinks.

use super::*;

impl HnswIndex {
    /// The neighbour-selection heuristic (Algorithm 4 of the paper): keep a candidate only if it
    /// is closer to the base than to every neighbour kept so far, so links point in diverse
    /// directions. `candidates` are sorted closest first.
    pub(super) fn select_neighbours(&self, candidates: &[Candidate], max: usize) -> Vec<u32> {
        // Look each candidate's vector up once: the pairwise checks below would otherwise
        // repeat the record lookup for every pair.
        let mut kept: Vec<(u32, Option<NodeVector<'_>>)> = Vec::with_capacity(max);
        for c in candidates {
            if kept.len() >= max {
                break;
            }
            let v = self.node_vector(c.offset);
            let diverse = kept
                .iter()
                .all(|(_, k)| self.pair_distance(v, *k) > c.distance);
            if diverse {
                kept.push((c.offset, v));
            }
        }
        kept.into_iter().map(|(n, _)| n).collect()
    }

    /// The vector the link heuristic measures a node by: full precision, or `f16`.
    #[inline]
    pub(super) fn node_vector(&self, node: u32) -> Option<NodeVector<'_>> {
        match &self.codec {
            Codec::F16 => self.half_vector(node).map(NodeVector::F16),
            _ => self.full_vector(node).map(NodeVector::F32),
        }
    }

    #[inline]
    pub(super) fn pair_distance(
        &self,
        a: Option<NodeVector<'_>>,
        b: Option<NodeVector<'_>>,
    ) -> f32 {
        match (a, b) {
            (Some(NodeVector::F32(x)), Some(NodeVector::F32(y))) => {
                self.metric.distance(self.kernels, x, y)
            }
            (Some(NodeVector::F16(x)), Some(NodeVector::F16(y))) => {
                self.metric.distance_f16_f16(self.kernels, x, y)
            }
            _ => f32::INFINITY,
        }
    }

    /// The heuristic's choice for `node`'s list at `level` among `ids`, measured from `node`.
    pub(super) fn select_among(&self, node: u32, ids: &[u32], level: usize) -> Vec<u32> {
        let base = self.node_vector(node);
        // A full list pruned on a backlink (most calls) reads `2·m` vectors scattered over the
        // graph: load a few ahead of the one being measured, as the walks do.
        for &n in ids.iter().take(PREFETCH_AHEAD) {
            self.prefetch_exact(n);
        }
        let mut scored: Vec<Candidate> = ids
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                if let Some(&ahead) = ids.get(k + PREFETCH_AHEAD) {
                    self.prefetch_exact(ahead);
                }
                Candidate::new(n, self.pair_distance(base, self.node_vector(n)))
            })
            .collect();
        scored.sort();
        self.select_neighbours(&scored, self.max_links(level))
    }

    /// Gives `host` a level-0 link to `node`, in place of its farthest link when its list is
    /// full. `None` when it had one already, else the node that lost its link, if any.
    pub(super) fn link_from(
        &self,
        host: u32,
        node: u32,
        buf: &mut Vec<u32>,
    ) -> Option<Option<u32>> {
        let _guard = self.lock_links(host);
        self.neighbours(host, 0, buf);
        if buf.contains(&node) {
            return None;
        }
        let displaced = if buf.len() < self.config.m0() {
            buf.push(node);
            None
        } else {
            let base = self.node_vector(host);
            let farthest = buf
                .iter()
                .map(|&n| self.pair_distance(base, self.node_vector(n)))
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i)
                .expect("a full list is not empty");
            Some(std::mem::replace(&mut buf[farthest], node))
        };
        self.set_neighbours(host, 0, buf);
        Some(displaced)
    }

    /// Adds `new` to the links of `node` at `level`, pruning with the heuristic when full.
    pub(super) fn connect(&self, node: u32, new: u32, level: usize) {
        let _guard = self.lock_links(node);
        let mut current = Vec::new();
        self.neighbours(node, level, &mut current);
        if current.contains(&new) {
            return;
        }
        let max = self.max_links(level);
        if current.len() < max {
            current.push(new);
            self.set_neighbours(node, level, &current);
            return;
        }
        current.push(new);
        let kept = self.select_among(node, &current, level);
        self.set_neighbours(node, level, &kept);
    }

    /// Greedy descent through the upper levels, from the entry at level `top` to level
    /// `down_to + 1`; returns the closest node found.
    pub(super) fn descend<M: Fn(u32) -> Option<(f32, bool)>>(
        &self,
        measure: &M,
        entry: u32,
        top: usize,
        down_to: usize,
    ) -> Candidate {
        let mut best = Candidate::new(entry, measure(entry).map_or(f32::INFINITY, |(d, _)| d));
        let mut buf = Vec::new();
        for level in (down_to + 1..=top).rev() {
            best = self.greedy(measure, best, level, &mut buf);
        }
        best
    }

    /// The links an insert of `offset` (prepared vector `v`, top level `level`) gets on each of
    /// its levels down to `lowest`, top first: a walk per level from the entry down, then the
    /// heuristic. With
    /// `rescore`, `measure` is approximate (8-bit codes) and the candidates a walk found are
    /// measured again exactly before the heuristic picks among them.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn choose_links<M: Fn(u32) -> Option<(f32, bool)>, P: Fn(u32)>(
        &self,
        offset: PointOffset,
        v: &[f32],
        level: usize,
        entry: u32,
        top: usize,
        measure: &M,
        prefetch: &P,
        rescore: bool,
        lowest: usize,
    ) -> Vec<(usize, Vec<u32>)> {
        let mut entries = vec![self.descend(measure, entry, top, level).offset];
        let mut chosen = Vec::with_capacity(level.min(top) + 1);
        for l in (lowest..=level.min(top)).rev() {
            let mut found =
                self.search_level(measure, prefetch, &entries, self.config.ef_construct, l);
            found.retain(|c| c.offset != offset);
            if rescore {
                for c in found.iter().take(PREFETCH_AHEAD) {
                    self.prefetch_exact(c.offset);
                }
                let mut exact: Vec<Candidate> = Vec::with_capacity(found.len());
                for (k, c) in found.iter().enumerate() {
                    if let Some(ahead) = found.get(k + PREFETCH_AHEAD) {
                        self.prefetch_exact(ahead.offset);
                    }
                    // The codes do not know deletes: a node deleted during the walk is dropped
                    // here, as the exact walk would not have kept it.
                    if let Some((d, true)) = self.measure_exact(v, c.offset) {
                        exact.push(Candidate::new(c.offset, d));
                    }
                }
                exact.sort();
                found = exact;
            }
            // A new node chooses `m` links on every level, level 0 included; its level-0 list
            // grows towards `2·m` only through backlinks from later nodes (hnswlib's rule).
            // Choosing `2·m` at once, as we did before, gave glove-50 1.04x the QPS at recall
            // 0.95 (and more at 0.99) but a 384-dimensional set 0.82x of it, and cost builds
            // 1.25x (glove) to 1.7x (384-d) the time, each insert then making twice the
            // level-0 backlinks (docs/benchmarks.md, 2026-12-07).
            chosen.push((l, self.select_neighbours(&found, self.config.m)));
            if !found.is_empty() {
                entries = found.iter().map(|c| c.offset).collect();
            }
        }
        chosen
    }

    /// Builds the levels above 0 over a base layer given whole (`from_graph`): each node
    /// whose seeded level is above 0 is linked on its upper levels as an insert would link
    /// it, its base-layer links left as they are.
    pub(super) fn build_upper_levels(&self) {
        let end = self.end.load(Ordering::Acquire);
        for offset in 0..end {
            let level = self.level_for(offset);
            if level == 0 {
                continue;
            }
            let words = (0..level * (1 + self.config.m))
                .map(|_| AtomicU32::new(0))
                .collect();
            self.upper
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(offset, words);
            let Some((entry, top)) = self.entry() else {
                return;
            };
            if top > 0 {
                let Some(v) = self.vector(offset) else {
                    continue;
                };
                let measure = |n: u32| self.measure_exact(&v, n);
                let prefetch = |n: u32| self.prefetch_exact(n);
                let chosen =
                    self.choose_links(offset, &v, level, entry, top, &measure, &prefetch, false, 1);
                for (l, selected) in &chosen {
                    self.set_neighbours(offset, *l, selected);
                }
                for (l, selected) in &chosen {
                    for &n in selected {
                        self.connect(n, offset, *l);
                    }
                }
            }
            if level > top {
                self.entry
                    .store((level as u64) << 32 | offset as u64, Ordering::Release);
            }
        }
    }

    pub(super) fn insert_prepared(
        &self,
        offset: PointOffset,
        v: &[f32],
        codes: Option<&BuildCodes>,
    ) -> Result<()> {
        let level = self.level_for(offset);
        let mut payload = Vec::with_capacity(self.codec.payload_bytes(self.dim));
        self.codec.encode(v, &mut payload)?;
        let Some(mut writer) = self.arena.claim(offset)? else {
            return Err(IndexError::InvalidParameter {
                name: "offset",
                reason: format!("offset {offset} is already in use (offsets are written once)"),
            });
        };
        writer.write_payload(&payload);
        if self.codec.kind().is_quantized() {
            writer.write_secondary(bytemuck::cast_slice(v));
        }
        if level > 0 {
            let words = (0..level * (1 + self.config.m))
                .map(|_| AtomicU32::new(0))
                .collect();
            self.upper
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(offset, words);
        }
        writer.publish();
        self.end.fetch_max(offset + 1, Ordering::AcqRel);
        self.live.fetch_add(1, Ordering::AcqRel);

        // An insert that may raise the top level holds the entry lock throughout, so that two
        // such inserts cannot each link only the levels they saw and then both claim the top
        // (hnswlib does the same); every other insert runs in parallel.
        let mut entry_guard = Some(self.entry_lock.lock().unwrap_or_else(|e| e.into_inner()));
        let (entry, top) = match self.entry() {
            None => {
                self.entry
                    .store((level as u64) << 32 | offset as u64, Ordering::Release);
                return Ok(());
            }
            Some(e) => e,
        };
        if !self.config.has_graph() {
            // No graph (`m` 0): the node is stored and published, and found by scans.
            return Ok(());
        }
        if level <= top {
            entry_guard = None;
        }

        // The node's lists on every level are chosen and set before any other node links to
        // it. Linked level by level instead, the node became reachable through its backlinks
        // on an upper level while its lists below were still empty; a concurrent insert that
        // descended onto it stopped there, found only it at level 0, and linked to it alone:
        // islands of nodes far from their true neighbours, which no walk could find (the
        // unreachable points of concurrent builds). hnswlib avoids this by making readers wait
        // on the node's lock for the whole insert; ordering the writes keeps reads lock-free.
        let chosen = match codes.and_then(|c| Some((c, c.sq.query_int(v, self.metric).ok()?))) {
            Some((codes, query)) => {
                // Nodes of the batch have codes; any other (inserted before it) is measured
                // exactly. Every node a link leads to is published, so a code is always there
                // to read and the walk does not touch the node's record at all; the codes do
                // not know deletes, which the exact pass over the candidates drops.
                let measure = |n: u32| match codes.get(n) {
                    Some((code, correction)) => Some((query.distance(code, correction), true)),
                    None => self.measure_exact(v, n),
                };
                let prefetch = |n: u32| match codes.get(n) {
                    Some((code, _)) => {
                        quant::kernels::prefetch(code.as_ptr(), 1);
                        quant::kernels::prefetch(code.as_ptr().wrapping_add(code.len() - 1), 1);
                    }
                    None => self.prefetch_exact(n),
                };
                self.choose_links(offset, v, level, entry, top, &measure, &prefetch, true, 0)
            }
            None => {
                let measure = |n: u32| self.measure_exact(v, n);
                let prefetch = |n: u32| self.prefetch_exact(n);
                self.choose_links(offset, v, level, entry, top, &measure, &prefetch, false, 0)
            }
        };
        for (l, selected) in &chosen {
            // Another insert may already have linked itself to this node (it can reach the
            // node through an upper level once its backlinks there exist; not before):
            // keep those links rather than overwrite them.
            let l = *l;
            let _guard = self.lock_links(offset);
            let mut existing = Vec::new();
            self.neighbours(offset, l, &mut existing);
            if existing.is_empty() {
                self.set_neighbours(offset, l, selected);
            } else {
                existing.extend(selected.iter().copied());
                existing.sort_unstable();
                existing.dedup();
                let kept = self.select_among(offset, &existing, l);
                self.set_neighbours(offset, l, &kept);
            }
        }
        for (l, selected) in &chosen {
            for &n in selected {
                self.connect(n, offset, *l);
            }
        }
        if level > top {
            self.entry
                .store((level as u64) << 32 | offset as u64, Ordering::Release);
        }
        drop(entry_guard);
        Ok(())
    }
}
