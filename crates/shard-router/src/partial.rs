//! Partial answers: in a scope that allows them ([`allowing`]), a search or a count whose
//! shards cannot all answer (unreachable, or past the deadline) answers from the shards that
//! did, and the shards left out are noted for the caller to mark the answer with
//! ([`missing`]). Outside such a scope, or when no shard answered, or when a shard refused
//! the request (a fault of the request, which every shard would share), the request fails as
//! before.
//!
//! The scope is a task-local: the router enters it once per request, around the handler, and
//! reads what was left out when the handler is done, without threading a flag through every
//! read path. Work spawned onto other tasks does not see it (and so never answers partially).

use crate::ShardError;
use std::cell::RefCell;
use std::future::Future;

tokio::task_local! {
    static MISSING: RefCell<Vec<u32>>;
}

/// Runs `f` allowing partial answers; its output and the shards its reads left out (sorted,
/// each once).
pub async fn allowing<F: Future>(f: F) -> (F::Output, Vec<u32>) {
    MISSING
        .scope(RefCell::new(Vec::new()), async move {
            let out = f.await;
            (out, missing())
        })
        .await
}

/// Whether the current task may answer partially.
pub fn allowed() -> bool {
    MISSING.try_with(|_| ()).is_ok()
}

/// The shards left out so far in the current scope (none outside one).
pub fn missing() -> Vec<u32> {
    MISSING
        .try_with(|m| {
            let mut m = m.borrow().clone();
            m.sort_unstable();
            m.dedup();
            m
        })
        .unwrap_or_default()
}

/// Whether an error is one a partial answer may skip: the shard could not answer, as opposed
/// to refusing the request.
pub(crate) fn skippable(e: &ShardError) -> bool {
    matches!(
        e,
        ShardError::Unavailable { .. } | ShardError::Timeout { .. }
    )
}

/// Keeps the shards' answers, leaving out those that could not answer when the scope allows
/// it and some shard did answer; otherwise the first error.
pub(crate) fn keep_answered<T>(
    results: Vec<(u32, Result<T, ShardError>)>,
) -> Result<Vec<T>, ShardError> {
    let allowed = allowed();
    let answered = results.iter().any(|(_, r)| r.is_ok());
    let mut kept = Vec::with_capacity(results.len());
    let mut left_out = Vec::new();
    for (shard, r) in results {
        match r {
            Ok(v) => kept.push(v),
            Err(e) if allowed && answered && skippable(&e) => left_out.push(shard),
            Err(e) => return Err(e),
        }
    }
    if !left_out.is_empty() {
        let _ = MISSING.try_with(|m| m.borrow_mut().extend(left_out));
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down(shard: u32) -> Result<u8, ShardError> {
        Err(ShardError::Unavailable {
            shard,
            reason: "down".into(),
        })
    }

    #[tokio::test]
    async fn only_a_scope_that_allows_it_answers_partially() {
        let results = || vec![(0, Ok(1u8)), (1, down(1)), (2, Ok(3))];
        assert!(keep_answered(results()).is_err(), "outside a scope");
        let (kept, missing) = allowing(async { keep_answered(results()) }).await;
        assert_eq!(kept.unwrap(), vec![1, 3]);
        assert_eq!(missing, vec![1]);
        // No shard answered: an error, not an empty answer.
        let (kept, _) = allowing(async { keep_answered(vec![(0, down(0)), (1, down(1))]) }).await;
        assert!(kept.is_err());
        // A refusal is the request's fault: never skipped.
        let refused = vec![
            (0, Ok(1u8)),
            (
                1,
                Err(ShardError::Refused {
                    shard: 1,
                    status: 400,
                    reason: "bad".into(),
                }),
            ),
        ];
        let (kept, _) = allowing(async { keep_answered(refused) }).await;
        assert!(kept.is_err());
    }
}
