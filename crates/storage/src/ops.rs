//! Write operations, as they are logged and applied.
//!
//! Every operation names its points explicitly: a delete or payload change by filter is
//! resolved to ids under the collection's write lock before it is logged, so replaying the
//! log after a crash does exactly what was done the first time, whatever the filter would
//! match later.
//!
//! # Log body layout (version 1)
//! ```text
//! [version u8 = 1][header_len u32 LE][header: JSON][vectors: f32 LE, in header order]
//! ```
//! The JSON header holds the operation with each vector replaced by its length, and each
//! sparse vector by its indices (its values, one per index, follow the point's dense vectors in
//! the float block; a point without sparse vectors has no `sparse` key, so records without
//! them are the bytes they always were), and each multivector by its name, rows and
//! dimension under `multi` (its values, row after row, follow the sparse values); the floats
//! follow in one block, so a batch of vectors costs 4 bytes per value instead of a decimal
//! rendering, and reads back bit for bit. A `batch` header nests the headers of its
//! operations; their floats follow in the order of those operations. (A reader older than
//! batches rejects such a record as an unknown operation instead of skipping it.)

use crate::multi::MultiVector;
use crate::sparse::SparseVector;
use crate::{Result, StorageError};
use index_core::PointId;
use payload::Payload;
use serde::{Deserialize, Serialize};

/// The largest number of points one operation may carry.
pub const MAX_POINTS_PER_OPERATION: usize = 100_000;

/// One point to upsert: its id, its vectors by name (`""` for the unnamed one), its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct PointWrite {
    /// The point's id.
    pub id: PointId,
    /// Vectors by name, each already validated and prepared (normalised for cosine).
    pub vectors: Vec<(String, Vec<f32>)>,
    /// Sparse vectors by name, each validated (indices unique and ascending).
    pub sparse: Vec<(String, SparseVector)>,
    /// Multivectors by name, each validated and prepared (rows normalised for cosine).
    pub multi: Vec<(String, MultiVector)>,
    /// The payload (empty when none was given).
    pub payload: Payload,
}

/// A write, with every point named explicitly.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Insert or replace points (the vectors and the whole payload).
    Upsert(Vec<PointWrite>),
    /// Delete points.
    Delete(Vec<PointId>),
    /// Merge keys into the payloads, or into the object at `key`.
    SetPayload {
        /// Points.
        ids: Vec<PointId>,
        /// Keys to set.
        payload: Payload,
        /// Nested path to write into.
        key: Option<String>,
    },
    /// Replace the payloads.
    OverwritePayload {
        /// Points.
        ids: Vec<PointId>,
        /// The new payload.
        payload: Payload,
    },
    /// Delete payload keys (paths).
    DeletePayload {
        /// Points.
        ids: Vec<PointId>,
        /// Key paths.
        keys: Vec<String>,
    },
    /// Remove whole payloads.
    ClearPayload(Vec<PointId>),
    /// Operations applied in order as one (`/points/batch`): one log record, so a crash
    /// leaves all of them or none.
    Batch(Vec<Operation>),
}

impl Operation {
    /// The points the operation touches.
    pub fn ids(&self) -> Vec<PointId> {
        match self {
            Operation::Upsert(p) => p.iter().map(|p| p.id).collect(),
            Operation::Delete(ids)
            | Operation::ClearPayload(ids)
            | Operation::SetPayload { ids, .. }
            | Operation::OverwritePayload { ids, .. }
            | Operation::DeletePayload { ids, .. } => ids.clone(),
            Operation::Batch(ops) => ops.iter().flat_map(Operation::ids).collect(),
        }
    }

    /// Keeps only what concerns the points `keep` accepts (splitting an operation across
    /// shards); `None` when nothing is left.
    pub fn restricted(&self, keep: impl Fn(&PointId) -> bool) -> Option<Operation> {
        self.restricted_dyn(&keep)
    }

    fn restricted_dyn(&self, keep: &dyn Fn(&PointId) -> bool) -> Option<Operation> {
        let ids = |ids: &Vec<PointId>| -> Vec<PointId> {
            ids.iter().copied().filter(|i| keep(i)).collect()
        };
        let op = match self {
            Operation::Upsert(p) => {
                Operation::Upsert(p.iter().filter(|p| keep(&p.id)).cloned().collect())
            }
            Operation::Delete(i) => Operation::Delete(ids(i)),
            Operation::ClearPayload(i) => Operation::ClearPayload(ids(i)),
            Operation::SetPayload {
                ids: i,
                payload,
                key,
            } => Operation::SetPayload {
                ids: ids(i),
                payload: payload.clone(),
                key: key.clone(),
            },
            Operation::OverwritePayload { ids: i, payload } => Operation::OverwritePayload {
                ids: ids(i),
                payload: payload.clone(),
            },
            Operation::DeletePayload { ids: i, keys } => Operation::DeletePayload {
                ids: ids(i),
                keys: keys.clone(),
            },
            Operation::Batch(ops) => {
                let kept: Vec<Operation> =
                    ops.iter().filter_map(|o| o.restricted_dyn(keep)).collect();
                return (!kept.is_empty()).then_some(Operation::Batch(kept));
            }
        };
        (!op.ids().is_empty()).then_some(op)
    }

    /// The JSON header of the operation; its vectors' floats go to `floats`, in order.
    fn header(&self, floats: &mut Vec<f32>) -> Header {
        match self {
            Operation::Upsert(points) => Header::Upsert {
                points: points
                    .iter()
                    .map(|p| HeaderPoint {
                        id: id_to_wire(p.id),
                        vectors: p
                            .vectors
                            .iter()
                            .map(|(n, v)| {
                                floats.extend_from_slice(v);
                                (n.clone(), v.len())
                            })
                            .collect(),
                        sparse: p
                            .sparse
                            .iter()
                            .map(|(n, v)| {
                                floats.extend_from_slice(&v.values);
                                (n.clone(), v.indices.clone())
                            })
                            .collect(),
                        multi: p
                            .multi
                            .iter()
                            .map(|(n, m)| {
                                floats.extend_from_slice(m.as_flat());
                                (n.clone(), m.row_count(), m.dim())
                            })
                            .collect(),
                        payload: p.payload.clone(),
                    })
                    .collect(),
            },
            Operation::Delete(ids) => Header::Delete {
                ids: ids.iter().map(|&i| id_to_wire(i)).collect(),
            },
            Operation::ClearPayload(ids) => Header::ClearPayload {
                ids: ids.iter().map(|&i| id_to_wire(i)).collect(),
            },
            Operation::SetPayload { ids, payload, key } => Header::SetPayload {
                ids: ids.iter().map(|&i| id_to_wire(i)).collect(),
                payload: payload.clone(),
                key: key.clone(),
            },
            Operation::OverwritePayload { ids, payload } => Header::OverwritePayload {
                ids: ids.iter().map(|&i| id_to_wire(i)).collect(),
                payload: payload.clone(),
            },
            Operation::DeletePayload { ids, keys } => Header::DeletePayload {
                ids: ids.iter().map(|&i| id_to_wire(i)).collect(),
                keys: keys.clone(),
            },
            Operation::Batch(ops) => Header::Batch {
                ops: ops.iter().map(|o| o.header(floats)).collect(),
            },
        }
    }

    /// Encodes the operation as a log body.
    pub fn encode(&self) -> Vec<u8> {
        let mut floats: Vec<f32> = Vec::new();
        let header = self.header(&mut floats);
        let json = serde_json::to_vec(&header).expect("operations serialise");
        let mut out = Vec::with_capacity(5 + json.len() + floats.len() * 4);
        out.push(1u8);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        for f in floats {
            out.extend_from_slice(&f.to_le_bytes());
        }
        out
    }

    /// Decodes a log body.
    pub fn decode(body: &[u8]) -> Result<Operation> {
        let bad = |why: &str| StorageError::InvalidInput(format!("log record: {why}"));
        if body.len() < 5 || body[0] != 1 {
            return Err(bad("unknown version"));
        }
        let len = u32::from_le_bytes(body[1..5].try_into().unwrap()) as usize;
        let json = body.get(5..5 + len).ok_or_else(|| bad("short header"))?;
        let header: Header = serde_json::from_slice(json).map_err(|e| bad(&e.to_string()))?;
        let mut floats = body[5 + len..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()));
        Operation::from_header(header, &mut floats)
    }

    /// The operation a decoded header describes, its vectors read from `floats` in order.
    fn from_header(header: Header, floats: &mut impl Iterator<Item = f32>) -> Result<Operation> {
        let bad = |why: &str| StorageError::InvalidInput(format!("log record: {why}"));
        let ids = |ids: Vec<WireId>| ids.into_iter().map(id_from_wire).collect::<Vec<_>>();
        let op = match header {
            Header::Upsert { points } => {
                let mut out = Vec::with_capacity(points.len());
                for p in points {
                    let mut vectors = Vec::with_capacity(p.vectors.len());
                    for (name, n) in p.vectors {
                        let v: Vec<f32> = floats.by_ref().take(n).collect();
                        if v.len() != n {
                            return Err(bad("vector block too short"));
                        }
                        vectors.push((name, v));
                    }
                    let mut sparse = Vec::with_capacity(p.sparse.len());
                    for (name, indices) in p.sparse {
                        let values: Vec<f32> = floats.by_ref().take(indices.len()).collect();
                        if values.len() != indices.len() {
                            return Err(bad("vector block too short"));
                        }
                        let v = SparseVector::new(indices, values).map_err(|e| bad(&e))?;
                        sparse.push((name, v));
                    }
                    let mut multi = Vec::with_capacity(p.multi.len());
                    for (name, rows, dim) in p.multi {
                        let n = rows
                            .checked_mul(dim)
                            .filter(|&n| n <= crate::multi::MAX_MULTIVECTOR_VALUES)
                            .ok_or_else(|| bad("multivector too large"))?;
                        let values: Vec<f32> = floats.by_ref().take(n).collect();
                        if values.len() != n {
                            return Err(bad("vector block too short"));
                        }
                        let m = MultiVector::from_flat(dim, values).map_err(|e| bad(&e))?;
                        multi.push((name, m));
                    }
                    out.push(PointWrite {
                        id: id_from_wire(p.id),
                        vectors,
                        sparse,
                        multi,
                        payload: p.payload,
                    });
                }
                Operation::Upsert(out)
            }
            Header::Delete { ids: i } => Operation::Delete(ids(i)),
            Header::ClearPayload { ids: i } => Operation::ClearPayload(ids(i)),
            Header::SetPayload {
                ids: i,
                payload,
                key,
            } => Operation::SetPayload {
                ids: ids(i),
                payload,
                key,
            },
            Header::OverwritePayload { ids: i, payload } => Operation::OverwritePayload {
                ids: ids(i),
                payload,
            },
            Header::DeletePayload { ids: i, keys } => {
                Operation::DeletePayload { ids: ids(i), keys }
            }
            Header::Batch { ops } => Operation::Batch(
                ops.into_iter()
                    .map(|h| Operation::from_header(h, floats))
                    .collect::<Result<_>>()?,
            ),
        };
        Ok(op)
    }
}

/// A point id on the wire: integers as numbers, UUIDs as their 128-bit value in a string.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum WireId {
    Num(u64),
    Uuid(String),
}

fn id_to_wire(id: PointId) -> WireId {
    match id {
        PointId::Num(n) => WireId::Num(n),
        PointId::Uuid(u) => WireId::Uuid(format!("{u:032x}")),
    }
}

fn id_from_wire(w: WireId) -> PointId {
    match w {
        WireId::Num(n) => PointId::Num(n),
        WireId::Uuid(s) => PointId::Uuid(u128::from_str_radix(&s, 16).unwrap_or(0)),
    }
}

#[derive(Serialize, Deserialize)]
struct HeaderPoint {
    id: WireId,
    vectors: Vec<(String, usize)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sparse: Vec<(String, Vec<u32>)>,
    /// Multivectors as (name, rows, dimension); their values follow the sparse values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    multi: Vec<(String, usize, usize)>,
    payload: Payload,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Header {
    Upsert {
        points: Vec<HeaderPoint>,
    },
    Delete {
        ids: Vec<WireId>,
    },
    ClearPayload {
        ids: Vec<WireId>,
    },
    SetPayload {
        ids: Vec<WireId>,
        payload: Payload,
        key: Option<String>,
    },
    OverwritePayload {
        ids: Vec<WireId>,
        payload: Payload,
    },
    DeletePayload {
        ids: Vec<WireId>,
        keys: Vec<String>,
    },
    Batch {
        ops: Vec<Header>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_round_trip_bit_for_bit() {
        let mut payload = Payload::new();
        payload.insert("a".into(), serde_json::json!({"b": [1, 2.5, "x", null]}));
        let ops = vec![
            Operation::Upsert(vec![
                PointWrite {
                    id: PointId::Num(7),
                    vectors: vec![(String::new(), vec![0.1, -0.0, f32::MIN_POSITIVE, 3.0e38])],
                    payload: payload.clone(),
                    sparse: Vec::new(),
                    multi: Vec::new(),
                },
                PointWrite {
                    id: PointId::Uuid(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
                    vectors: vec![("a".into(), vec![1.0]), ("b".into(), vec![2.0, 3.0])],
                    payload: Payload::new(),
                    sparse: vec![
                        (
                            "s".into(),
                            SparseVector::new(vec![9, 2], vec![-0.5, f32::MIN_POSITIVE]).unwrap(),
                        ),
                        ("t".into(), SparseVector::default()),
                    ],
                    multi: vec![(
                        "m".into(),
                        MultiVector::new(vec![vec![1.0, -2.0], vec![0.5, f32::MIN_POSITIVE]])
                            .unwrap(),
                    )],
                },
            ]),
            Operation::Delete(vec![PointId::Num(1), PointId::Uuid(5)]),
            Operation::SetPayload {
                ids: vec![PointId::Num(1)],
                payload: payload.clone(),
                key: Some("a.b".into()),
            },
            Operation::OverwritePayload {
                ids: vec![PointId::Num(2)],
                payload,
            },
            Operation::DeletePayload {
                ids: vec![PointId::Num(3)],
                keys: vec!["x".into()],
            },
            Operation::ClearPayload(vec![PointId::Num(4)]),
            Operation::Batch(vec![
                Operation::Upsert(vec![PointWrite {
                    id: PointId::Num(9),
                    vectors: vec![(String::new(), vec![1.5, -2.5])],
                    payload: Payload::new(),
                    sparse: Vec::new(),
                    multi: Vec::new(),
                }]),
                Operation::Delete(vec![PointId::Num(9)]),
                Operation::Upsert(vec![PointWrite {
                    id: PointId::Num(10),
                    vectors: vec![(String::new(), vec![7.0, 8.0])],
                    payload: Payload::new(),
                    sparse: Vec::new(),
                    multi: Vec::new(),
                }]),
            ]),
        ];
        for op in ops {
            let back = Operation::decode(&op.encode()).unwrap();
            assert_eq!(back, op);
            if let (Operation::Upsert(a), Operation::Upsert(b)) = (&back, &op) {
                for (x, y) in a.iter().zip(b) {
                    for ((_, u), (_, v)) in x.vectors.iter().zip(&y.vectors) {
                        assert!(u.iter().zip(v).all(|(p, q)| p.to_bits() == q.to_bits()));
                    }
                }
            }
        }
    }

    #[test]
    fn damaged_bodies_are_errors() {
        let op = Operation::Delete(vec![PointId::Num(1)]);
        let body = op.encode();
        assert!(Operation::decode(&body[..3]).is_err());
        let mut v2 = body.clone();
        v2[0] = 2;
        assert!(Operation::decode(&v2).is_err());
        let up = Operation::Upsert(vec![PointWrite {
            id: PointId::Num(1),
            vectors: vec![(String::new(), vec![1.0, 2.0])],
            payload: Payload::new(),
            sparse: Vec::new(),
            multi: Vec::new(),
        }])
        .encode();
        assert!(Operation::decode(&up[..up.len() - 4]).is_err());
    }
}
