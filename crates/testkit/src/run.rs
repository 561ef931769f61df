//! Running a test body so that its clean-up happens even when it fails.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

/// Runs `body`, then `cleanup` whether or not the body panicked, then passes the
/// panic on: a failed assertion must not leave a schema, keys or files behind.
pub async fn run_then(body: impl Future<Output = ()>, cleanup: impl Future<Output = ()>) {
    let result = AssertUnwindSafe(body).catch_unwind().await;
    cleanup.await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Runs `future` to completion on a fresh runtime in a thread of its own, so it
/// can be called from synchronous tests and from `Drop`, inside a runtime or not.
pub fn block_on<T: Send>(future: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime")
                    .block_on(future)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
