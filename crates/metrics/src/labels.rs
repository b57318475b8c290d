//! Label values with bounded cardinality.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use crate::MetricsConfig;

/// The label value that every value past a limit folds into.
///
/// A collection really named `other` shares its series with the folded
/// ones; the two can only be told apart while the collection limit is not
/// reached.
pub const OVERFLOW_LABEL: &str = "other";

/// The `shard` label of one collection label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShardLabel {
    Id(u32),
    Overflow,
}

impl ShardLabel {
    pub(crate) fn as_label(self) -> Cow<'static, str> {
        match self {
            ShardLabel::Id(id) => Cow::Owned(id.to_string()),
            ShardLabel::Overflow => Cow::Borrowed(OVERFLOW_LABEL),
        }
    }
}

/// Which collections (and shards of each) have a label value of their own.
#[derive(Debug)]
pub(crate) struct CollectionLabels {
    max_collections: usize,
    max_shards: usize,
    admitted: HashMap<String, HashSet<u32>>,
    /// Shards seen under the overflow collection label.
    overflow_shards: HashSet<u32>,
}

impl CollectionLabels {
    pub(crate) fn new(config: &MetricsConfig) -> Self {
        CollectionLabels {
            max_collections: config.max_collections,
            max_shards: config.max_shards_per_collection,
            admitted: HashMap::new(),
            overflow_shards: HashSet::new(),
        }
    }

    /// The label of `collection` (and of `shard`, if given) when it can be
    /// decided without admitting anything; `None` when a new value must be
    /// admitted first ([`admit`](Self::admit), under a write lock).
    pub(crate) fn resolve<'a>(
        &self,
        collection: &'a str,
        shard: Option<u32>,
    ) -> Option<(&'a str, Option<ShardLabel>)> {
        let (label, shards) = match self.admitted.get(collection) {
            Some(shards) => (collection, shards),
            None if self.admitted.len() >= self.max_collections => {
                (OVERFLOW_LABEL, &self.overflow_shards)
            }
            None => return None,
        };
        let shard_label = match shard {
            None => None,
            Some(id) if shards.contains(&id) => Some(ShardLabel::Id(id)),
            Some(_) if shards.len() >= self.max_shards => Some(ShardLabel::Overflow),
            Some(_) => return None,
        };
        Some((label, shard_label))
    }

    /// Like [`resolve`](Self::resolve), admitting the collection and shard
    /// while there is room.
    pub(crate) fn admit<'a>(
        &mut self,
        collection: &'a str,
        shard: Option<u32>,
    ) -> (&'a str, Option<ShardLabel>) {
        let (label, shards) = if self.admitted.contains_key(collection)
            || self.admitted.len() < self.max_collections
        {
            let shards = self.admitted.entry(collection.to_owned()).or_default();
            (collection, shards)
        } else {
            (OVERFLOW_LABEL, &mut self.overflow_shards)
        };
        let shard_label = shard.map(|id| {
            if shards.contains(&id) {
                ShardLabel::Id(id)
            } else if shards.len() < self.max_shards {
                shards.insert(id);
                ShardLabel::Id(id)
            } else {
                ShardLabel::Overflow
            }
        });
        (label, shard_label)
    }

    /// Frees `collection`'s label value. Returns whether it had one (if
    /// not, its observations went into the overflow label and stay there).
    pub(crate) fn forget(&mut self, collection: &str) -> bool {
        self.admitted.remove(collection).is_some()
    }

    pub(crate) fn admitted_count(&self) -> usize {
        self.admitted.len()
    }
}

/// Which endpoint label values exist.
#[derive(Debug)]
pub(crate) struct EndpointLabels {
    max_endpoints: usize,
    admitted: HashSet<String>,
}

impl EndpointLabels {
    pub(crate) fn new(config: &MetricsConfig) -> Self {
        EndpointLabels {
            max_endpoints: config.max_endpoints,
            admitted: HashSet::new(),
        }
    }

    /// The label of an endpoint already admitted, or the overflow label
    /// when full; `None` when it must be admitted first.
    pub(crate) fn resolve<'a>(&self, endpoint: &'a str) -> Option<&'a str> {
        if self.admitted.contains(endpoint) {
            Some(endpoint)
        } else if self.admitted.len() >= self.max_endpoints {
            Some(OVERFLOW_LABEL)
        } else {
            None
        }
    }

    pub(crate) fn admit<'a>(&mut self, endpoint: &'a str) -> &'a str {
        if self.admitted.contains(endpoint) {
            return endpoint;
        }
        if self.admitted.len() < self.max_endpoints {
            self.admitted.insert(endpoint.to_owned());
            return endpoint;
        }
        OVERFLOW_LABEL
    }
}

/// The `method` label: one of the standard HTTP methods in upper case, or
/// the overflow label, so clients inventing methods cannot add series.
pub(crate) fn method_label(method: &str) -> &'static str {
    const METHODS: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    METHODS
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(method))
        .unwrap_or(OVERFLOW_LABEL)
}

/// The `status` label: the three-digit code, or the overflow label for a
/// number outside 100..=599.
pub(crate) fn status_label(status: u16) -> Cow<'static, str> {
    if (100..=599).contains(&status) {
        Cow::Owned(status.to_string())
    } else {
        Cow::Borrowed(OVERFLOW_LABEL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(collections: usize, shards: usize) -> CollectionLabels {
        CollectionLabels::new(&MetricsConfig {
            max_collections: collections,
            max_shards_per_collection: shards,
            max_endpoints: 1,
        })
    }

    #[test]
    fn collections_past_the_limit_fold_and_a_forget_frees_a_slot() {
        let mut labels = limits(2, 8);
        assert_eq!(
            labels.resolve("a", None),
            None,
            "a new value needs admission"
        );
        assert_eq!(labels.admit("a", None).0, "a");
        assert_eq!(labels.admit("b", None).0, "b");
        assert_eq!(labels.admit("c", None).0, OVERFLOW_LABEL);
        assert_eq!(labels.resolve("c", None), Some((OVERFLOW_LABEL, None)));
        assert_eq!(labels.resolve("a", None), Some(("a", None)));
        assert!(labels.forget("a"));
        assert!(!labels.forget("c"), "c never had a label of its own");
        assert_eq!(labels.admit("c", None).0, "c");
        assert_eq!(labels.admitted_count(), 2);
    }

    #[test]
    fn shards_past_the_limit_fold_per_collection() {
        let mut labels = limits(1, 2);
        assert_eq!(labels.admit("a", Some(0)).1, Some(ShardLabel::Id(0)));
        assert_eq!(labels.admit("a", Some(1)).1, Some(ShardLabel::Id(1)));
        assert_eq!(labels.admit("a", Some(2)).1, Some(ShardLabel::Overflow));
        assert_eq!(
            labels.resolve("a", Some(1)),
            Some(("a", Some(ShardLabel::Id(1))))
        );
        // The overflow collection keeps its own shard budget.
        assert_eq!(
            labels.admit("z", Some(7)),
            (OVERFLOW_LABEL, Some(ShardLabel::Id(7)))
        );
    }

    #[test]
    fn methods_and_statuses_are_normalised() {
        assert_eq!(method_label("get"), "GET");
        assert_eq!(method_label("Post"), "POST");
        assert_eq!(method_label("BREW"), OVERFLOW_LABEL);
        assert_eq!(status_label(404), "404");
        assert_eq!(status_label(42), OVERFLOW_LABEL);
        assert_eq!(status_label(1000), OVERFLOW_LABEL);
    }
}
