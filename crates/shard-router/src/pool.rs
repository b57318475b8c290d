//! The bounded thread pool local shards search on.

use crate::ShardError;
use std::time::Instant;
use storage::StorageError;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of plain threads taking jobs from one multi-consumer channel.
///
/// Not a work-stealing pool: an idle rayon worker spins looking for work after each job, and
/// on a small machine that spinning costs more CPU than a short search itself. The channel
/// (crossbeam's) hands each job to one waiting worker without a lock around the receiver.
/// The queue is unbounded here because the service bounds the requests in flight above it.
#[derive(Clone)]
pub struct SearchPool {
    jobs: crossbeam_channel::Sender<Job>,
}

impl SearchPool {
    /// A pool of `threads` workers (at least one). They stop when the last handle is dropped.
    pub fn new(threads: usize) -> Result<SearchPool, ShardError> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("search-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        // A job that panics drops its answer channel (its caller sees the
                        // worker stop) but must not take the worker with it.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .map_err(|e| ShardError::Unavailable {
                    shard: 0,
                    reason: format!("cannot start a search thread: {e}"),
                })?;
        }
        Ok(SearchPool { jobs: tx })
    }

    /// Hands `f` to the pool now and returns a future of its answer, which comes back through
    /// a channel, so the reactor never blocks. Gives up at the deadline (a job that starts
    /// after it does not run; one that started runs to completion). The job is queued before
    /// the future is first polled, so several can be started and then awaited together.
    pub(crate) fn submit<T: Send + 'static>(
        &self,
        shard: u32,
        deadline: Instant,
        f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, ShardError>> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if Instant::now() >= deadline {
                let _ = tx.send(Err(ShardError::Timeout { shard }));
                return;
            }
            let _ = tx.send(f().map_err(ShardError::from));
        });
        let queued = self.jobs.send(job).is_ok();
        async move {
            if !queued {
                return Err(ShardError::Unavailable {
                    shard,
                    reason: "search pool stopped".into(),
                });
            }
            match tokio::time::timeout_at(deadline.into(), rx).await {
                Ok(Ok(r)) => r,
                // The job panicked: a failure of this request, not an overloaded server.
                Ok(Err(_)) => Err(ShardError::Failed {
                    shard,
                    reason: "the search failed (a worker panicked)".into(),
                }),
                Err(_) => Err(ShardError::Timeout { shard }),
            }
        }
    }
}

/// Runs `f` on tokio's blocking threads, not the search pool: scrolls and retrievals read
/// up to a whole page of records, and must not hold up the short searches queued on the
/// pool. Gives up waiting at the deadline (the work runs to completion).
pub(crate) async fn run_blocking<T: Send + 'static>(
    shard: u32,
    deadline: Instant,
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, ShardError> {
    if Instant::now() >= deadline {
        return Err(ShardError::Timeout { shard });
    }
    let task = tokio::task::spawn_blocking(f);
    match tokio::time::timeout_at(deadline.into(), task).await {
        Ok(Ok(r)) => r.map_err(ShardError::from),
        Ok(Err(e)) => Err(ShardError::Failed {
            shard,
            reason: e.to_string(),
        }),
        Err(_) => Err(ShardError::Timeout { shard }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_panicking_job_fails_its_request_and_the_worker_goes_on() {
        let pool = SearchPool::new(1).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let failed = pool
            .submit(3, deadline, || -> Result<u32, StorageError> {
                panic!("a bug")
            })
            .await;
        assert!(
            matches!(failed, Err(ShardError::Failed { shard: 3, .. })),
            "{failed:?}"
        );
        // The only worker survived and takes the next job.
        assert_eq!(pool.submit(3, deadline, || Ok(7u32)).await.unwrap(), 7);
        let late = pool
            .submit(3, Instant::now() - Duration::from_millis(1), || Ok(1u32))
            .await;
        assert!(
            matches!(late, Err(ShardError::Timeout { shard: 3 })),
            "{late:?}"
        );
    }

    #[tokio::test]
    async fn blocking_reads_keep_the_deadline() {
        let deadline = Instant::now() + Duration::from_secs(10);
        assert_eq!(run_blocking(1, deadline, || Ok(5u32)).await.unwrap(), 5);
        let slow = run_blocking(1, Instant::now() + Duration::from_millis(20), || {
            std::thread::sleep(Duration::from_millis(500));
            Ok(0u32)
        })
        .await;
        assert!(
            matches!(slow, Err(ShardError::Timeout { shard: 1 })),
            "{slow:?}"
        );
    }
}
