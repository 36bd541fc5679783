//! The bounded blocking pool for codec work: at most one conversion per core runs at once,
//! on tokio's blocking threads, so decoding and encoding never stall the async executor and a
//! burst of conversions queues instead of oversubscribing the machine.

use std::sync::OnceLock;

use tokio::sync::Semaphore;

fn permits() -> &'static Semaphore {
    static POOL: OnceLock<Semaphore> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Semaphore::new(cores)
    })
}

/// Run CPU-bound codec work on the bounded pool.
pub async fn run<T, F>(work: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let _permit = permits()
        .acquire()
        .await
        .map_err(|_| "codec pool closed".to_string())?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("codec task failed: {e}"))
}
