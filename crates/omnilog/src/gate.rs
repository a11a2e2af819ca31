//! A held start, shared by the tasks of `serve` that act in the present (the router, the
//! reactor): `omnilog demo` starts them held while it back-fills past hours, whose
//! decisions the history already holds, and opens their gates once it is live. A task
//! learns when its gate opened (the reactor acts on nothing due before).

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// Opens a task started held; cloned to whoever opens it.
#[derive(Clone, Debug)]
pub struct Gate {
    opened: Arc<watch::Sender<Option<DateTime<Utc>>>>,
    /// What the log says when it opens ("the router routes from now on").
    says: &'static str,
}

/// The task's side of a [`Gate`].
#[derive(Debug)]
pub struct Held(watch::Receiver<Option<DateTime<Utc>>>);

impl Gate {
    /// A gate and its task's side. One not `held` is open from the start (since the
    /// earliest time there is).
    pub fn new(held: bool, says: &'static str) -> (Gate, Held) {
        let (opened, waiting) = watch::channel((!held).then_some(DateTime::<Utc>::MIN_UTC));
        (
            Gate {
                opened: Arc::new(opened),
                says,
            },
            Held(waiting),
        )
    }

    /// Opens it, now (once: it is never closed, and a second call changes nothing).
    pub fn open(&self) {
        self.opened.send_if_modified(|opened| {
            if opened.is_some() {
                return false;
            }
            tracing::info!("{}", self.says);
            *opened = Some(Utc::now());
            true
        });
    }
}

impl Held {
    /// When the gate opened; `None` if the task was stopped first.
    pub async fn opened(mut self, stopped: &watch::Receiver<bool>) -> Option<DateTime<Utc>> {
        let mut stopping = stopped.clone();
        tokio::select! {
            opened = self.0.wait_for(Option::is_some) => opened.ok().and_then(|at| *at),
            _ = stopping.wait_for(|stop| *stop) => None,
        }
    }
}

/// A task that acts once its [`Gate`] opens, until stopped: the router, the reactor.
#[derive(Debug)]
pub struct GatedTask {
    stop: watch::Sender<bool>,
    gate: Gate,
    task: tokio::task::JoinHandle<()>,
}

impl GatedTask {
    /// Spawns `run` to start once the gate opens (at once unless `held`), with the time it
    /// opened and the stop signal it must heed between rounds.
    pub fn spawn<F, R>(held: bool, says: &'static str, run: R) -> Self
    where
        R: FnOnce(DateTime<Utc>, watch::Receiver<bool>) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        let (gate, waiting) = Gate::new(held, says);
        let task = tokio::spawn(async move {
            if let Some(opened) = waiting.opened(&stopped).await {
                run(opened, stopped).await;
            }
        });
        GatedTask { stop, gate, task }
    }

    /// What opens the task when it was started held.
    pub fn gate(&self) -> Gate {
        self.gate.clone()
    }

    /// Stops after the round in progress.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
