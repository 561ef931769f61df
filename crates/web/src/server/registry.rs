//! The open connections of one server, so that a full server can make room.
//!
//! Every connection is registered while it is open, with whether it is serving
//! a request. When the server holds its maximum number of connections, or the
//! process runs out of file descriptors, the oldest connection that is not
//! serving a request (an idle keep-alive connection, or a client still sending
//! its request head, as slow-header attacks do) is closed to make room. A
//! connection that is serving a request is never shed: its client is owed an
//! answer, and slow bodies are bounded by the body timeouts instead.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One open connection as the registry sees it.
struct Entry {
    /// Requests being served (0 or 1 with HTTP/1.1; a counter keeps it simple).
    busy: Arc<AtomicUsize>,
    /// Cancelled to close the connection at once.
    close: CancellationToken,
}

/// The open connections, oldest first.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    open: BTreeMap<u64, Entry>,
    /// Told whenever a connection ends.
    ended: Arc<Notify>,
}

/// A registered connection; dropping it unregisters the connection.
pub(crate) struct Registration {
    registry: Registry,
    id: u64,
    /// Shared with the connection's service, which counts requests in it.
    pub(crate) busy: Arc<AtomicUsize>,
    /// Cancelled when the registry sheds this connection.
    pub(crate) close: CancellationToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let ended = {
            let mut inner = self.registry.lock();
            inner.open.remove(&self.id);
            inner.ended.clone()
        };
        ended.notify_one();
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map stays consistent whatever panicked while it was held.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Open connections.
    pub(crate) fn len(&self) -> usize {
        self.lock().open.len()
    }

    /// Returns once fewer than `max` connections are open: at once if so,
    /// else after closing the oldest idle one, else when one ends.
    pub(crate) async fn make_room(&self, max: usize) {
        loop {
            let ended = {
                let inner = self.lock();
                if inner.open.len() < max {
                    return;
                }
                inner.ended.clone()
            };
            if self.shed_oldest_idle() {
                continue;
            }
            ended.notified().await;
        }
    }

    /// Registers a new connection.
    pub(crate) fn register(&self) -> Registration {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let busy = Arc::new(AtomicUsize::new(0));
        let close = CancellationToken::new();
        inner.open.insert(
            id,
            Entry {
                busy: busy.clone(),
                close: close.clone(),
            },
        );
        Registration {
            registry: self.clone(),
            id,
            busy,
            close,
        }
    }

    /// Closes the oldest connection that is not serving a request; false when
    /// every open connection is serving one.
    pub(crate) fn shed_oldest_idle(&self) -> bool {
        let mut inner = self.lock();
        let idle = inner
            .open
            .iter()
            .find(|(_, e)| e.busy.load(Ordering::Acquire) == 0 && !e.close.is_cancelled())
            .map(|(id, _)| *id);
        match idle.and_then(|id| inner.open.remove(&id)) {
            Some(entry) => {
                entry.close.cancel();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_idle_connection_is_shed_first() {
        let registry = Registry::default();
        let a = registry.register();
        let b = registry.register();
        let c = registry.register();
        a.busy.fetch_add(1, Ordering::AcqRel);
        assert_eq!(registry.len(), 3);
        assert!(registry.shed_oldest_idle());
        assert!(!a.close.is_cancelled(), "serving a request: kept");
        assert!(b.close.is_cancelled(), "oldest idle: shed");
        assert!(!c.close.is_cancelled());
        assert_eq!(registry.len(), 2);
        assert!(registry.shed_oldest_idle());
        assert!(c.close.is_cancelled());
        assert!(!registry.shed_oldest_idle(), "only a busy one is left");
        drop((a, b, c));
        assert_eq!(registry.len(), 0);
    }

    #[tokio::test]
    async fn making_room_waits_for_a_busy_connection_to_end() {
        let registry = Registry::default();
        let busy = registry.register();
        busy.busy.fetch_add(1, Ordering::AcqRel);
        let idle = registry.register();
        // The idle one is closed at once.
        registry.make_room(2).await;
        assert!(idle.close.is_cancelled());
        drop(idle);
        // Only the busy one is left: wait for it to end.
        let waiting = tokio::spawn({
            let registry = registry.clone();
            async move { registry.make_room(1).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        assert!(!busy.close.is_cancelled(), "never shed while serving");
        drop(busy);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
    }
}
