//! Checkpoints of a shard (`state.bin`) and loading one at open.
//!
//! # Checkpoint file (`state.bin`), version 4
//! ```text
//! [magic "VRSHARD\0"][version u32 LE = 4][body_len u64 LE][crc32 of body u32 LE][body]
//! body   = [header_len u32 LE][header: JSON][points: points_bytes][f32 LE values]
//! header = {"applied_seq", "next_segment_id", "point_count", "points_bytes",
//!           "indexed": [{"id", "generation", "rows"}],     graphs on disk and the rows they hold
//!           "columns": [{"name", "dim", "distance", "ivf"}]} the layout columns are numbered in
//! point  = [id: 0 u8, u64 | 1 u8, u128 (UUID)]
//!          [location: 0 u8, segment u64, row u32            a row of an on-disk graph
//!                   | 1 u8, n u8, n × (column u16, len u32)] vectors inline, in the f32 block]
//!          [payload_len u32][payload: JSON]
//!          [n u8, n × sparse]                                 its sparse vectors
//!          [n u8, n × multi]                                  its multivectors
//! sparse = [name_len u16][name: UTF-8][entries u32][entries × (index u32, value f32)]
//! multi  = [name_len u16][name: UTF-8][dim u32][rows u32][rows × dim × f32 LE]
//! ```
//! Version 3 had no multivectors, version 2 no sparse vectors either, version 1 no `columns`
//! either: its layout is the config's. All are read, and never written.
//! Loading maps the recorded layout onto the config's vectors by name (see `relayout`).
//!
//! Indexed segments' graphs live beside it as `seg-<id>-<generation>-<column>.hnsw` (the
//! index crate's own versioned, checksummed format). A growing graph is rewritten only when
//! the rows added since its last file reach half of what that file holds (and on close):
//! rows past the file are checkpointed inline meanwhile, so the bytes written stay linear in
//! the collection size. A graph file is deleted only once no checkpoint refers to it. The
//! state file is replaced atomically (temporary file, fsync, rename, directory fsync).
//!
//! # Log first
//! A checkpoint records the last operation it contains, and after a restart the log is
//! replayed past it. So the log must hold that operation durably **before** the checkpoint
//! does: otherwise a power cut could leave a checkpoint ahead of the log, the log would number
//! new writes from where its disk copy ends, and the shard would skip them as already applied
//! (acknowledged writes lost). Every checkpoint therefore fsyncs the log through the
//! operation it covers first ([`Wal::sync`], shared with concurrent writers' group commit).

use super::*;

impl LocalShard {
    /// Writes a checkpoint if anything changed since the last one, after making `log`
    /// durable through what it covers (see "Log first" above). Returns the sequence number it
    /// covers.
    pub fn checkpoint(&self, log: &Wal) -> Result<u64> {
        self.write_checkpoint(false, log)
    }

    /// Writes a checkpoint even if nothing was applied since the last one (after a change
    /// that is not an operation, such as a re-layout of the named vectors).
    pub fn checkpoint_forced(&self, log: &Wal) -> Result<u64> {
        self.write_checkpoint(true, log)
    }

    pub(super) fn write_checkpoint(&self, force: bool, log: &Wal) -> Result<u64> {
        let _files = self.files.lock();
        let (bytes, seq, referenced) = {
            let st = self.state.read();
            if !force && st.applied_seq == st.checkpointed_seq && self.dir.join(STATE_FILE).exists()
            {
                return Ok(st.checkpointed_seq);
            }
            self.encode_state(&st)
        };
        log.sync(seq)?;
        let path = self.dir.join(STATE_FILE);
        write_atomically(&path, &bytes)?;
        self.state.write().checkpointed_seq = seq;
        // Graph files no checkpoint refers to any more.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("seg-")
                    && (name.ends_with(".hnsw")
                        || name.ends_with(".ivf")
                        || name.ends_with(".cagra"))
                    && !referenced.contains(&name)
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(seq)
    }

    /// The files of the last checkpoint (state file first), for snapshots.
    pub fn checkpoint_files(&self) -> Result<Vec<PathBuf>> {
        let _files = self.files.lock();
        let path = self.dir.join(STATE_FILE);
        let bytes = std::fs::read(&path).map_err(|e| StorageError::io(&path, e))?;
        let header = decode_state(&path, &bytes)?.0;
        // The files are numbered in the layout the checkpoint records.
        let layout = header
            .columns
            .unwrap_or_else(|| relayout::layout_of(&self.settings().vectors));
        let mut out = vec![path];
        for seg in &header.indexed {
            for (c, column) in layout.iter().enumerate() {
                out.push(self.graph_file(seg.id, seg.generation, c, column.kind()));
            }
        }
        Ok(out)
    }

    pub(super) fn encode_state(&self, st: &State) -> (Vec<u8>, u64, HashSet<String>) {
        let columns = self.settings().vectors.len();
        let mut referenced = HashSet::new();
        // Indexed segments whose graphs are on disk; rows past what a file holds (added since
        // it was written) are checkpointed inline, like appendable rows.
        let mut saved: HashMap<u64, u32> = HashMap::new();
        let indexed: Vec<IndexedHeader> = st
            .segments
            .iter()
            .filter(|s| s.is_indexed() && s.generation() > 0)
            .map(|s| {
                for c in 0..columns {
                    referenced.insert(format!(
                        "seg-{}-{}-{c}.{}",
                        s.id,
                        s.generation(),
                        self.extension(c)
                    ));
                }
                saved.insert(s.id, s.saved_rows() as u32);
                IndexedHeader {
                    id: s.id,
                    generation: s.generation(),
                    rows: s.saved_rows() as u64,
                }
            })
            .collect();
        let mut points = Vec::with_capacity(st.points.len() * 24);
        let mut floats: Vec<f32> = Vec::new();
        for (id, e) in &st.points {
            match *id {
                PointId::Num(n) => {
                    points.push(0u8);
                    points.extend_from_slice(&n.to_le_bytes());
                }
                PointId::Uuid(u) => {
                    points.push(1u8);
                    points.extend_from_slice(&u.to_le_bytes());
                }
            }
            if saved.get(&e.seg.id).is_some_and(|&rows| e.row < rows) {
                points.push(0u8);
                points.extend_from_slice(&e.seg.id.to_le_bytes());
                points.extend_from_slice(&e.row.to_le_bytes());
            } else {
                points.push(1u8);
                let present: Vec<(usize, Vec<f32>)> = (0..columns)
                    .filter_map(|c| e.seg.vector(c, e.row).map(|v| (c, v)))
                    .collect();
                points.push(present.len() as u8);
                for (c, v) in present {
                    points.extend_from_slice(&(c as u16).to_le_bytes());
                    points.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    floats.extend_from_slice(&v);
                }
            }
            let json = serde_json::to_vec(&e.payload).expect("payload serialises");
            points.extend_from_slice(&(json.len() as u32).to_le_bytes());
            points.extend_from_slice(&json);
            let sparse = e.sparse();
            // At most one per configured sparse vector, and those are at most
            // MAX_NAMED_VECTORS (under 256).
            points.push(sparse.len() as u8);
            for (name, v) in sparse {
                points.extend_from_slice(&(name.len() as u16).to_le_bytes());
                points.extend_from_slice(name.as_bytes());
                points.extend_from_slice(&(v.indices.len() as u32).to_le_bytes());
                for (i, x) in v.indices.iter().zip(&v.values) {
                    points.extend_from_slice(&i.to_le_bytes());
                    points.extend_from_slice(&x.to_le_bytes());
                }
            }
            let multi = e.multi();
            points.push(multi.len() as u8);
            for (name, m) in multi {
                // At full width whatever the storage: the file does not depend on it.
                let m = m.widened();
                points.extend_from_slice(&(name.len() as u16).to_le_bytes());
                points.extend_from_slice(name.as_bytes());
                points.extend_from_slice(&(m.dim() as u32).to_le_bytes());
                points.extend_from_slice(&(m.row_count() as u32).to_le_bytes());
                points.extend_from_slice(bytemuck_f32(m.as_flat()));
            }
        }
        let header = StateHeader {
            columns: Some(relayout::layout_of(&self.settings().vectors)),
            applied_seq: st.applied_seq,
            next_segment_id: st.next_segment_id,
            indexed,
            point_count: st.points.len() as u64,
            points_bytes: points.len() as u64,
        };
        let json = serde_json::to_vec(&header).expect("state serialises");
        let mut body = Vec::with_capacity(4 + json.len() + points.len() + floats.len() * 4);
        body.extend_from_slice(&(json.len() as u32).to_le_bytes());
        body.extend_from_slice(&json);
        body.extend_from_slice(&points);
        body.extend_from_slice(bytemuck_f32(&floats));
        let mut out = Vec::with_capacity(24 + body.len());
        out.extend_from_slice(STATE_MAGIC);
        out.extend_from_slice(&STATE_VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&persist::crc32(&body).to_le_bytes());
        out.extend_from_slice(&body);
        (out, st.applied_seq, referenced)
    }

    pub(super) fn load(&self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|e| StorageError::io(path, e))?;
        let (header, points, floats, version) = decode_state(path, &bytes)?;
        let corrupt = |why: String| StorageError::corrupt(path, why);
        // The layout the file is numbered in, mapped onto the config's vectors by name: they
        // differ after a crash between a change of the named vectors and its checkpoint.
        let settings = self.settings();
        let layout = header
            .columns
            .clone()
            .unwrap_or_else(|| relayout::layout_of(&settings.vectors));
        let keep = relayout::keep_columns(&layout, &settings.vectors);
        let same_layout = relayout::is_identity(&keep, layout.len());
        let mut column_of = vec![None; layout.len()];
        for (c, k) in keep.iter().enumerate() {
            if let Some(o) = k {
                column_of[*o] = Some(c);
            }
        }
        let mut segments: HashMap<u64, Arc<Segment>> = HashMap::new();
        for seg in &header.indexed {
            let mut fresh = self.fresh_graphs(&keep, &settings.vectors)?.into_iter();
            let mut graphs = Vec::new();
            for (c, v) in settings.vectors.iter().enumerate() {
                let Some(o) = keep[c] else {
                    graphs.push(fresh.next().expect("a fresh graph per new column"));
                    continue;
                };
                let file = self.graph_file(seg.id, seg.generation, o, layout[o].kind());
                if !file.exists() {
                    return Err(StorageError::corrupt(
                        &file,
                        "graph file named by the checkpoint is missing",
                    ));
                }
                graphs.push(
                    SegmentIndex::load(&file, layout[o].kind(), v.on_disk)
                        .map_err(|e| StorageError::corrupt(&file, e.to_string()))?,
                );
            }
            let generation = if same_layout {
                seg.generation
            } else {
                // The next checkpoint names files in the config's layout: link them now.
                let fresh: Vec<&SegmentIndex> = keep
                    .iter()
                    .zip(&graphs)
                    .filter(|(k, _)| k.is_none())
                    .map(|(_, g)| g)
                    .collect();
                self.relink(
                    seg.id,
                    seg.generation,
                    &keep,
                    &layout,
                    &settings.vectors,
                    &fresh,
                )?
            };
            let rows = Rows {
                ids: vec![PointId::Num(u64::MAX); seg.rows as usize],
                live: Default::default(),
            };
            let segment = Segment::indexed(seg.id, graphs, generation, rows);
            segment.set_saved_rows(seg.rows as usize);
            segments.insert(seg.id, Arc::new(segment));
        }
        let mut st = self.state.write();
        let mut r = persist::Cursor::new(points, 0);
        let mut at = 0usize;
        for _ in 0..header.point_count {
            let id = match r.u8().ok_or_else(|| corrupt("short point list".into()))? {
                0 => PointId::Num(r.u64().ok_or_else(|| corrupt("short point id".into()))?),
                1 => PointId::Uuid(r.u128().ok_or_else(|| corrupt("short point id".into()))?),
                t => return Err(corrupt(format!("bad id tag {t}"))),
            };
            let (seg, row) = match r.u8().ok_or_else(|| corrupt("short location".into()))? {
                0 => {
                    let s = r.u64().ok_or_else(|| corrupt("short location".into()))?;
                    let row = r.u32().ok_or_else(|| corrupt("short location".into()))?;
                    let seg = segments
                        .get(&s)
                        .ok_or_else(|| corrupt(format!("point {id} names unknown segment {s}")))?
                        .clone();
                    {
                        let mut rows = seg.rows.write();
                        if row as usize >= rows.ids.len() {
                            return Err(corrupt(format!("point {id}: row {row} out of range")));
                        }
                        // Two points on one row: one of them would be served the other's
                        // vectors.
                        if rows.live.get(row) {
                            return Err(corrupt(format!(
                                "point {id}: row {row} of segment {s} is another point's"
                            )));
                        }
                        rows.ids[row as usize] = id;
                        rows.live.set(row, true);
                    }
                    (seg, row)
                }
                1 => {
                    let n = r.u8().ok_or_else(|| corrupt("short location".into()))?;
                    let mut cols = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        let c = r
                            .u16()
                            .ok_or_else(|| corrupt("short vector entry".into()))?
                            as usize;
                        let len = r
                            .u32()
                            .ok_or_else(|| corrupt("short vector entry".into()))?
                            as usize;
                        let end = at + len;
                        if end > floats.len() || c >= layout.len() {
                            return Err(corrupt("vector block too short".into()));
                        }
                        // A vector of a column deleted since is dropped.
                        if let Some(c) = column_of[c] {
                            cols.push((c, at, end));
                        }
                        at = end;
                    }
                    let views: Vec<(usize, &[f32])> =
                        cols.iter().map(|&(c, s, e)| (c, &floats[s..e])).collect();
                    let row = st.active.push_row(id, &views);
                    (st.active.clone(), row)
                }
                t => return Err(corrupt(format!("bad location tag {t}"))),
            };
            let len = r.u32().ok_or_else(|| corrupt("short payload".into()))? as usize;
            let json = r
                .bytes(len)
                .ok_or_else(|| corrupt("short payload".into()))?;
            let payload: Payload = serde_json::from_slice(json)
                .map_err(|e| corrupt(format!("payload of {id}: {e}")))?;
            let mut sparse = Vec::new();
            if version >= 3 {
                let short = || corrupt(format!("short sparse vectors of {id}"));
                let n = r.u8().ok_or_else(short)?;
                for _ in 0..n {
                    let len = r.u16().ok_or_else(short)? as usize;
                    let name = std::str::from_utf8(r.bytes(len).ok_or_else(short)?)
                        .map_err(|_| corrupt(format!("sparse vector name of {id}")))?
                        .to_string();
                    let entries = r.u32().ok_or_else(short)? as usize;
                    if entries > crate::sparse::MAX_SPARSE_ENTRIES {
                        return Err(short());
                    }
                    let (mut indices, mut values) =
                        (Vec::with_capacity(entries), Vec::with_capacity(entries));
                    for _ in 0..entries {
                        indices.push(r.u32().ok_or_else(short)?);
                        values.push(f32::from_bits(r.u32().ok_or_else(short)?));
                    }
                    let v = SparseVector::new(indices, values)
                        .map_err(|e| corrupt(format!("sparse vector {name} of {id}: {e}")))?;
                    // A sparse vector deleted from the config since is dropped.
                    if st.sparse.contains_key(&name) {
                        sparse.push((name, v));
                    }
                }
            }
            for (name, v) in &sparse {
                st.sparse
                    .get_mut(name)
                    .expect("kept above")
                    .insert(id, None, v);
            }
            let sparse = (!sparse.is_empty()).then(|| sparse.into_boxed_slice());
            let mut multi = Vec::new();
            if version >= 4 {
                let short = || corrupt(format!("short multivectors of {id}"));
                let n = r.u8().ok_or_else(short)?;
                for _ in 0..n {
                    let len = r.u16().ok_or_else(short)? as usize;
                    let name = std::str::from_utf8(r.bytes(len).ok_or_else(short)?)
                        .map_err(|_| corrupt(format!("multivector name of {id}")))?
                        .to_string();
                    let dim = r.u32().ok_or_else(short)? as usize;
                    let rows = r.u32().ok_or_else(short)? as usize;
                    let values = rows
                        .checked_mul(dim)
                        .filter(|&n| n <= crate::multi::MAX_MULTIVECTOR_VALUES)
                        .ok_or_else(short)?;
                    let data = r.f32s(values).ok_or_else(short)?;
                    let m = MultiVector::from_flat(dim, data)
                        .map_err(|e| corrupt(format!("multivector {name} of {id}: {e}")))?;
                    // A multivector deleted from the config since, or created again with
                    // another dimension, is dropped.
                    if let Some(c) = st.multi.get(&name).filter(|c| c.dim == dim) {
                        let m = StoredMatrix::store(m, c.half);
                        multi.push((name, m));
                    }
                }
            }
            let multi = (!multi.is_empty()).then(|| multi.into_boxed_slice());
            // A point listed twice: its first row would stay live beside the second, found by
            // searches with stale vectors.
            if st.points.contains_key(&id) {
                return Err(corrupt(format!("point {id} is listed twice")));
            }
            st.points.insert(
                id,
                PointEntry {
                    seg,
                    row,
                    payload,
                    sparse,
                    multi,
                },
            );
        }
        let mut indexed: Vec<Arc<Segment>> = segments.into_values().collect();
        indexed.sort_by_key(|s| s.id);
        indexed.push(st.active.clone());
        st.segments = indexed;
        st.applied_seq = header.applied_seq;
        st.checkpointed_seq = header.applied_seq;
        st.next_segment_id = header.next_segment_id.max(1);
        self.seal_if_full(&mut st);
        self.encode_missing(&mut st, &keep);
        Ok(())
    }

    /// Encodes the matrices of every multivector whose hidden column the checkpoint did not
    /// have (`keep` gives no old column for it: a version of the encoding this build does not
    /// share, or a graph turned on since): each point holding one is moved, with all its
    /// vectors, to the appendable segment with its encoding, and the optimizer indexes it
    /// again. Without this, points of indexed segments would have no encoding and no search
    /// through the graph would find them.
    fn encode_missing(&self, st: &mut State, keep: &[Option<usize>]) {
        let settings = self.settings();
        let missing: Vec<(String, usize)> = settings
            .multi
            .iter()
            .filter_map(|m| {
                let (hidden, _) = m.encodings.as_ref()?;
                let c = settings.vectors.iter().position(|v| &v.name == hidden)?;
                keep[c].is_none().then(|| (m.name.clone(), c))
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        let ids: Vec<PointId> = st
            .points
            .iter()
            .filter(|(_, e)| {
                missing
                    .iter()
                    .any(|(name, _)| e.multi_vector(name).is_some())
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let e = st.points.get(&id).expect("listed above");
            let mut cols: Vec<(usize, Vec<f32>)> = (0..settings.vectors.len())
                .filter_map(|c| e.seg.vector(c, e.row).map(|v| (c, v)))
                .collect();
            for (name, c) in &missing {
                let column = &st.multi[name];
                if let (Some(m), Some((_, fde))) = (e.multi_vector(name), &column.encodings) {
                    cols.retain(|(k, _)| k != c);
                    cols.push((*c, fde.encode_document(&m.to_multi())));
                }
            }
            let views: Vec<(usize, &[f32])> =
                cols.iter().map(|(c, v)| (*c, v.as_slice())).collect();
            let row = st.active.push_row(id, &views);
            let active = st.active.clone();
            let e = st.points.get_mut(&id).expect("listed above");
            e.seg.set_live(e.row, false);
            e.seg = active;
            e.row = row;
            self.seal_if_full(st);
        }
    }
}

fn bytemuck_f32(v: &[f32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

#[derive(Serialize, Deserialize)]
struct IndexedHeader {
    id: u64,
    generation: u64,
    /// Rows the graph file holds.
    rows: u64,
}

#[derive(Serialize, Deserialize)]
struct StateHeader {
    /// The layout columns are numbered in (absent in version 1: the config's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    columns: Option<Vec<relayout::ColumnHeader>>,
    applied_seq: u64,
    next_segment_id: u64,
    indexed: Vec<IndexedHeader>,
    point_count: u64,
    points_bytes: u64,
}

/// The header, the point list, the inline vectors and the version of a checkpoint file.
type DecodedState<'a> = (StateHeader, &'a [u8], Vec<f32>, u32);

fn decode_state<'a>(path: &Path, bytes: &'a [u8]) -> Result<DecodedState<'a>> {
    let corrupt = |why: String| StorageError::corrupt(path, why);
    let mut r = persist::Cursor::new(bytes, 0);
    if bytes.len() < 24 || r.bytes(8) != Some(&STATE_MAGIC[..]) {
        return Err(corrupt("not a shard checkpoint (bad magic)".into()));
    }
    let version = r.u32().expect("length checked");
    if !(1..=STATE_VERSION).contains(&version) {
        return Err(corrupt(format!("unsupported checkpoint version {version}")));
    }
    let len = r.u64().expect("length checked");
    let crc = r.u32().expect("length checked");
    let body = usize::try_from(len)
        .ok()
        .and_then(|len| r.bytes(len))
        .ok_or_else(|| corrupt("truncated".into()))?;
    if persist::crc32(body) != crc {
        // One checksum covers the body: where in it the damage lies is not known.
        return Err(corrupt(format!(
            "checksum mismatch: damage somewhere in bytes 24..{}",
            24 + body.len()
        )));
    }
    let mut r = persist::Cursor::new(body, 0);
    let hlen = r.u32().ok_or_else(|| corrupt("short body".into()))? as usize;
    let json = r
        .bytes(hlen)
        .ok_or_else(|| corrupt("short header".into()))?;
    let header: StateHeader = serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?;
    let points = usize::try_from(header.points_bytes)
        .ok()
        .and_then(|n| r.bytes(n))
        .ok_or_else(|| corrupt("short point list".into()))?;
    if !r.remaining().is_multiple_of(4) {
        return Err(corrupt("vector block is not whole floats".into()));
    }
    let floats = r.f32s(r.remaining() / 4).expect("length checked");
    Ok((header, points, floats, version))
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename, then fsyncs the
/// directory, so a crash leaves either the old file or the new one.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    persist::replace_file(path, |out| out.write_all(bytes)).map_err(|e| StorageError::io(path, e))
}

/// Fsyncs a directory, making renames and creations in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    persist::sync_dir(dir).map_err(|e| StorageError::io(dir, e))
}
