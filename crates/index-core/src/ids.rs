//! Point identifiers.

use std::fmt;

/// The dense position of a point inside one index or segment, assigned by storage.
///
/// 32 bits: a segment holds at most about four billion points, and halving the width of every
/// graph link and id list is worth far more than the range.
pub type PointOffset = u32;

/// A point's id as users see it: an unsigned integer or a UUID, as in Qdrant.
///
/// Integers sort before UUIDs, then each by value, which is the order `scroll` walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PointId {
    /// An unsigned integer id.
    Num(u64),
    /// A UUID, as its 128-bit value.
    Uuid(u128),
}

impl PointId {
    /// Parses a UUID in its hyphenated or plain hexadecimal form (32 hex digits).
    pub fn parse_uuid(s: &str) -> Option<PointId> {
        let hex: String = s.chars().filter(|&c| c != '-').collect();
        let groups: Vec<usize> = s.split('-').map(str::len).collect();
        let shape_ok = groups == [8, 4, 4, 4, 12] || groups == [32];
        if !shape_ok || hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(&hex, 16).ok().map(PointId::Uuid)
    }
}

impl fmt::Display for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Uuid(u) => {
                let h = format!("{u:032x}");
                write!(
                    f,
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                )
            }
        }
    }
}

impl From<u64> for PointId {
    fn from(n: u64) -> Self {
        PointId::Num(n)
    }
}
