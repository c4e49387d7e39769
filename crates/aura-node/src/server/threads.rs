//! The server's worker threads: one per protocol worker, each running a current-thread
//! tokio runtime. Worker `w`'s driver and UDP socket, its TUN queue's reader and the
//! tasks of the clients it serves all run on thread `w`, so a client's packets cross no
//! thread between the socket and the device, and its tasks wake each other without
//! waking another thread (ADR 0023). The accept loop, the QUIC and TLS listeners, the
//! admin socket and the upkeep stay on the runtime the server was started on.

use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::DaemonError;

/// How long a stopping worker waits for its tasks' blocking work before it lets go.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// The running worker threads. Dropping them stops them without waiting;
/// [`WorkerThreads::stop`] waits until each has dropped its tasks.
#[derive(Debug)]
pub struct WorkerThreads {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    done: Vec<oneshot::Receiver<()>>,
}

impl WorkerThreads {
    /// Starts `count` threads (at least one), each running its own runtime until stopped.
    ///
    /// # Errors
    /// [`DaemonError::DataPath`] naming what could not be started.
    pub fn start(count: usize) -> Result<Self, DaemonError> {
        let mut threads = Self {
            handles: Vec::with_capacity(count),
            stops: Vec::with_capacity(count),
            done: Vec::with_capacity(count),
        };
        for w in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| {
                    DaemonError::DataPath(format!("cannot start worker {w}'s runtime: {e}"))
                })?;
            let (stop, stopped) = oneshot::channel::<()>();
            let (done_tx, done) = oneshot::channel::<()>();
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name(format!("aura-worker-{w}"))
                .spawn(move || {
                    // A dropped sender (the server gone) stops the thread too.
                    let _ = runtime.block_on(stopped);
                    runtime.shutdown_timeout(STOP_WAIT);
                    let _ = done_tx.send(());
                })
                .map_err(|e| {
                    DaemonError::DataPath(format!("cannot start worker thread {w}: {e}"))
                })?;
            threads.handles.push(handle);
            threads.stops.push(stop);
            threads.done.push(done);
        }
        Ok(threads)
    }

    /// Every worker's runtime, in worker order.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// The runtime of worker `w % count`.
    pub fn of(&self, w: usize) -> Option<&Handle> {
        self.handles.get(w.checked_rem(self.handles.len())?)
    }

    /// Stops every thread and waits until each has dropped its tasks (and with them the
    /// sockets and device queues they held).
    pub async fn stop(mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for done in self.done.drain(..) {
            let _ = done.await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Each worker's tasks run on its own thread, and stopping drops the tasks still
    /// running there (their channels close).
    #[tokio::test]
    async fn tasks_run_on_their_workers_thread_and_stop_with_it() {
        let threads = WorkerThreads::start(2).unwrap();
        let mut names = Vec::new();
        for w in 0..2 {
            let name = threads
                .of(w)
                .unwrap()
                .spawn(async { std::thread::current().name().map(str::to_owned) })
                .await
                .unwrap();
            names.push(name.unwrap());
        }
        assert_eq!(names, ["aura-worker-0", "aura-worker-1"]);
        assert_eq!(
            threads.of(3).unwrap().id(),
            threads.handles()[1].id(),
            "worker 3 of 2 wraps to 1"
        );
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        threads.of(0).unwrap().spawn(async move {
            let _held = tx;
            std::future::pending::<()>().await;
        });
        threads.stop().await;
        assert!(rx.recv().await.is_none(), "the task was dropped at stop");
    }

    #[test]
    fn zero_workers_start_one() {
        assert_eq!(WorkerThreads::start(0).unwrap().handles().len(), 1);
    }
}
