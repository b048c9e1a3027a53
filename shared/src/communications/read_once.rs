//! A read made at most once per key while one batch of the worker is handled: the messages of
//! a batch that share a run, an account or a sender wait for one read of it instead of making
//! their own (the AWS calls per email are what the product costs: docs/benchmarks.md).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

/// Values read once per key, shared by everyone who asks during one batch; a failed read is
/// not kept, so the next asker reads again.
pub(crate) struct ReadOnce<K, V> {
    cells: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K, V> Default for ReadOnce<K, V> {
    fn default() -> Self {
        Self {
            cells: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> ReadOnce<K, V> {
    /// The value of `key`: read by `read` the first time (concurrent askers wait for that one
    /// read), the kept value afterwards.
    pub(crate) async fn get_or_read<E, F, Fut>(&self, key: &K, read: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let cell = {
            // A panic elsewhere never poisons a batch: the map holds only finished reads.
            let mut cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(cells.entry(key.clone()).or_default())
        };
        cell.get_or_try_init(read).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn concurrent_askers_of_one_key_share_one_read_and_a_failure_is_not_kept() {
        let reads = AtomicU32::new(0);
        let memo: ReadOnce<&str, u32> = ReadOnce::default();
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok::<u32, ()>(7)
        };
        let answers =
            futures::future::join_all((0..10).map(|_| memo.get_or_read(&"run", read))).await;
        assert!(answers.iter().all(|answer| *answer == Ok(7)));
        assert_eq!(reads.load(Ordering::SeqCst), 1, "one read for ten askers");

        let failing: ReadOnce<&str, u32> = ReadOnce::default();
        assert_eq!(
            failing
                .get_or_read(&"account", || async { Err::<u32, &str>("down") })
                .await,
            Err("down")
        );
        assert_eq!(
            failing
                .get_or_read(&"account", || async { Ok::<u32, &str>(3) })
                .await,
            Ok(3),
            "read again after a failure"
        );
    }
}
