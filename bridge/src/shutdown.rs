//! How the bridge stops, in the way of tokio's mini-redis (`server.rs`, `shutdown.rs`): one
//! signal that every task listens to ([`Shutdown`]), and tasks grouped in [`Tasks`], each task
//! holding a clone of its group's `mpsc::Sender`, dropped when the task ends, so that the
//! group's `recv()` returning `None` means every one of them has. The main task waits for each
//! group with a deadline, in the order their work flows (the export's reader before the
//! JetStream publisher it feeds).
//!
//! A task stops in one of two ways at the signal: at once, where what it was doing can be
//! dropped ([`Shutdown::until_stopped`]: the import's NATS side, the presence, the metrics
//! endpoint), or by finishing its work first (the export's reader hands over what it read).
//! A task fed through a channel (the JetStream publisher, the thread writing into the relay)
//! needs no signal: it ends when the last sender of its input is dropped.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

/// A new signal: the [`Stop`] that gives it, and the first [`Shutdown`] that hears it.
pub fn channel() -> (Stop, Shutdown) {
    let (stop, stopping) = watch::channel(false);
    (Stop(stop), Shutdown(stopping))
}

/// Gives the stop signal ([`Stop::now`]); dropping it gives it too.
#[derive(Debug)]
pub struct Stop(watch::Sender<bool>);

impl Stop {
    /// Tells every task to stop.
    pub fn now(&self) {
        self.0.send_replace(true);
    }
}

/// A task's ear for the stop signal; clone it for each task.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Whether the signal was given (without waiting, for a blocking thread).
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Waits for the signal (returns at once once it was given).
    pub async fn stopped(&mut self) {
        // An error: the `Stop` is gone, which is the signal too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Runs `task` until it ends or the signal comes, whichever is first (dropping it then).
    pub async fn until_stopped(mut self, task: impl Future<Output = ()>) {
        tokio::select! {
            () = task => {}
            () = self.stopped() => {}
        }
    }
}

/// Tasks (and threads) that stop together, and how the main task learns that they have.
#[derive(Debug)]
pub struct Tasks {
    /// Cloned into each task, dropped when it ends.
    done: mpsc::Sender<()>,
    /// `None` from `recv()` once every clone of `done` is gone.
    finished: mpsc::Receiver<()>,
    /// The tasks, to abort those still running after the deadline (a thread cannot be).
    running: Vec<AbortHandle>,
}

/// Tasks still running at their group's deadline.
#[derive(Debug)]
#[must_use = "the tasks go on unless aborted"]
pub struct Unfinished(Vec<AbortHandle>);

impl Unfinished {
    /// Aborts them (dropping what they held, the senders of their output first).
    pub fn abort(self) {
        for task in self.0 {
            task.abort();
        }
    }
}

impl Tasks {
    /// An empty group.
    pub fn new() -> Tasks {
        let (done, finished) = mpsc::channel(1);
        Tasks { done, finished, running: Vec::new() }
    }

    /// Runs `task` on the runtime as one of the group.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        let done = self.done.clone();
        let handle = tokio::spawn(async move {
            task.await;
            drop(done);
        });
        self.running.push(handle.abort_handle());
    }

    /// Runs `work` on a thread of its own named `name`, as one of the group.
    ///
    /// # Errors
    ///
    /// When the thread cannot be started.
    pub fn spawn_thread(&self, name: &str, work: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let done = self.done.clone();
        std::thread::Builder::new().name(name.into()).spawn(move || {
            work();
            drop(done);
        })?;
        Ok(())
    }

    /// Waits until every task of the group has ended, at most `within`.
    ///
    /// # Errors
    ///
    /// [`Unfinished`]: the tasks still running then.
    pub async fn finish(self, within: Duration) -> Result<(), Unfinished> {
        let Tasks { done, mut finished, running } = self;
        drop(done);
        match tokio::time::timeout(within, finished.recv()).await {
            Ok(_) => Ok(()),
            Err(_) => Err(Unfinished(running)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_group_is_finished_when_its_last_task_and_thread_end() {
        let (stop, shutdown) = channel();
        let mut tasks = Tasks::new();
        // One ends at the signal, one a while after it, one thread when released.
        tasks.spawn(shutdown.clone().until_stopped(std::future::pending()));
        let mut late = shutdown.clone();
        tasks.spawn(async move {
            late.stopped().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        });
        let (release, wait) = std::sync::mpsc::channel::<()>();
        tasks
            .spawn_thread("test", move || {
                let _ = wait.recv();
            })
            .unwrap();
        assert!(!shutdown.is_stopped());
        stop.now();
        assert!(shutdown.is_stopped());
        drop(release);
        let started = std::time::Instant::now();
        assert!(tasks.finish(Duration::from_secs(5)).await.is_ok());
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "waited for the last one: {took:?}");
        assert!(took < Duration::from_secs(2), "no longer: {took:?}");
    }

    #[tokio::test]
    async fn a_task_past_the_deadline_is_reported_and_can_be_aborted() {
        let (_stop, shutdown) = channel();
        let mut tasks = Tasks::new();
        let (sender, mut receiver) = mpsc::channel::<()>(1);
        // Holds its output's sender, and never listens to the signal.
        tasks.spawn(async move {
            let _output = sender;
            std::future::pending::<()>().await;
        });
        let unfinished = tasks.finish(Duration::from_millis(100)).await.unwrap_err();
        assert!(!shutdown.is_stopped());
        unfinished.abort();
        assert_eq!(receiver.recv().await, None, "aborted, its sender dropped");
    }

    #[tokio::test]
    async fn dropping_the_stop_is_the_signal_too() {
        let (stop, mut shutdown) = channel();
        drop(stop);
        assert!(shutdown.is_stopped());
        shutdown.stopped().await;
        // An empty group is finished at once.
        assert!(Tasks::new().finish(Duration::ZERO).await.is_ok());
    }
}
