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
                Ok(Err(_)) => Err(ShardError::Unavailable {
                    shard,
                    reason: "search worker stopped".into(),
                }),
                Err(_) => Err(ShardError::Timeout { shard }),
            }
        }
    }
}
