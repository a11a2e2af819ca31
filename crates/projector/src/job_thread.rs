//! Threads of the projector's own, each running its jobs one after another, and a job's
//! outcome to wait for.
//!
//! Two reasons to own these threads rather than use tokio's blocking pool:
//!
//! - **Heaps.** A job's allocations are made and freed on one thread that stays, not on
//!   whichever pool thread (or fresh thread) picks it up: a thread per replay checkpoint
//!   took a fresh allocator heap each time, so every checkpoint's encoded records were laid
//!   out in fresh pages (the journey's checkpoint threads took a quarter of a 1M replay's
//!   page faults, `perf record`), and an ended thread's heap was left to the allocator to
//!   take back.
//! - **Priority.** A live server's projection is background work: a request is answered
//!   once the log has synced its events, whatever the views have folded. Its threads run
//!   at a lower scheduling priority (a higher nice value, [`crate::ProjectorConfig`]'s
//!   `background_nice`), so when ingest and the folds both want the two cores, ingest's
//!   path goes first and the folds take what is left; on an idle machine they run as
//!   fast as before. A raised nice value cannot be lowered again without privilege, so
//!   only threads that never run anything else may be given one: not tokio's pool, whose
//!   threads also serve queries and log reads.

use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::ProjectorError;

type Job = Box<dyn FnOnce() + Send>;

/// A named thread, started with its first job, that runs its jobs in order.
pub(crate) struct JobThread {
    name: String,
    /// Added to the process's nice value when the thread starts (0: the same priority).
    nice: i32,
    running: Option<(mpsc::Sender<Job>, JoinHandle<()>)>,
}

impl JobThread {
    /// A thread to be named `name` (Linux shows 15 bytes of it: see [`short_name`]), run
    /// `nice` steps below the process's priority.
    pub(crate) fn new(name: String, nice: i32) -> Self {
        JobThread {
            name,
            nice,
            running: None,
        }
    }

    /// Queues `job`; its outcome comes on the [`Pending`]. A job that panics is caught on
    /// its thread, which goes on with the next job; the panicking job's [`Pending`] ends
    /// with an error.
    pub(crate) fn run<T: Send + 'static>(
        &mut self,
        job: impl FnOnce() -> Result<T, ProjectorError> + Send + 'static,
    ) -> Result<Pending<T>, ProjectorError> {
        let (done, outcome) = oneshot::channel();
        let mut job: Job = Box::new(move || {
            // The waiter gone (its task was stopped): nothing to answer.
            let _ = done.send(job());
        });
        for _ in 0..2 {
            let jobs = match &self.running {
                Some((jobs, _)) => jobs,
                None => self.start()?,
            };
            match jobs.send(job) {
                Ok(()) => {
                    return Ok(Pending {
                        done: outcome,
                        outcome: None,
                    });
                }
                // The thread is gone (it could not be kept, or was stopped): start another.
                Err(mpsc::SendError(returned)) => {
                    job = returned;
                    if let Some((_, handle)) = self.running.take() {
                        let _ = handle.join();
                    }
                }
            }
        }
        Err(ProjectorError::Task(format!(
            "the thread {} stopped as soon as it started",
            self.name
        )))
    }

    fn start(&mut self) -> Result<&mpsc::Sender<Job>, ProjectorError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let nice = self.nice;
        let handle = std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || {
                if nice != 0 {
                    lower_priority(nice);
                }
                for job in queue {
                    // Caught here, not left to end the thread: a thread that ended on a
                    // panic still held its queue while it unwound, so a job sent in that
                    // window was dropped with the queue and reported as panicked too
                    // (seen in CI). The job owns everything it touches and its answer's
                    // sender is dropped by the unwind, so its waiter sees the panic.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!(thread = %std::thread::current().name().unwrap_or(""), "a projector job panicked");
                    }
                }
            })
            .map_err(|e| ProjectorError::Task(format!("starting the thread {}: {e}", self.name)))?;
        Ok(&self.running.insert((jobs, handle)).0)
    }

    /// Ends the thread once its queued jobs are done.
    pub(crate) fn stop(&mut self) {
        if let Some((jobs, handle)) = self.running.take() {
            drop(jobs);
            let _ = handle.join();
        }
    }
}

/// A job's thread ends with its owner, once its queued jobs are done.
impl Drop for JobThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Moves the calling thread `steps` nice values below its present priority (Linux gives
/// each thread its own nice value). Failing, it stays where it is: a slower ingest under
/// load, nothing wrong.
fn lower_priority(steps: i32) {
    let thread = rustix::thread::gettid();
    let lowered = rustix::process::getpriority_process(Some(thread))
        .and_then(|now| rustix::process::setpriority_process(Some(thread), now + steps));
    if let Err(error) = lowered {
        tracing::debug!(%error, "could not lower a projector thread's priority");
    }
}

/// A job queued on a [`JobThread`], and its outcome once it ended.
pub(crate) struct Pending<T> {
    done: oneshot::Receiver<Result<T, ProjectorError>>,
    /// Its outcome, once seen by [`Pending::is_finished`].
    outcome: Option<Result<T, ProjectorError>>,
}

impl<T> Pending<T> {
    /// Whether the job has ended (a job that panicked has: its answer will never come).
    pub(crate) fn is_finished(&mut self) -> bool {
        if self.outcome.is_none() {
            match self.done.try_recv() {
                Ok(outcome) => self.outcome = Some(outcome),
                Err(oneshot::error::TryRecvError::Closed) => self.outcome = Some(Err(panicked())),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
        }
        self.outcome.is_some()
    }

    /// Waits for the job to end, blocking the thread; its outcome.
    pub(crate) fn join(mut self) -> Result<T, ProjectorError> {
        match self.outcome.take() {
            Some(outcome) => outcome,
            None => self.done.blocking_recv().map_err(|_| panicked())?,
        }
    }

    /// Waits for the job to end; its outcome.
    pub(crate) async fn wait(mut self) -> Result<T, ProjectorError> {
        match self.outcome.take() {
            Some(outcome) => outcome,
            None => self.done.await.map_err(|_| panicked())?,
        }
    }
}

fn panicked() -> ProjectorError {
    ProjectorError::Task("a projector job panicked".to_owned())
}

/// A view's name cut to fit a thread's name beside its prefix (Linux keeps 15 bytes of it,
/// which is what `top -H`, `perf` and `/proc/PID/task/*/comm` show): "replay-journey",
/// "write-engageme". As "omnilog-replay-journey", every replay thread showed as
/// "omnilog-replay-".
pub(crate) fn short_name(view: &str) -> &str {
    let end = view
        .char_indices()
        .map(|(at, c)| at + c.len_utf8())
        .take_while(|end| *end <= 8)
        .last()
        .unwrap_or(0);
    &view[..end]
}

#[cfg(test)]
mod tests {
    use super::{JobThread, short_name};
    use crate::ProjectorError;

    #[test]
    fn thread_names_keep_eight_bytes_of_a_view_name_on_a_character_boundary() {
        assert_eq!(short_name("journey"), "journey");
        assert_eq!(short_name("engagement"), "engageme");
        assert_eq!(short_name("étiquettes"), "étiquet");
        assert_eq!(format!("write-{}", short_name("engagement")).len(), 14);
    }

    #[test]
    fn jobs_run_in_order_on_one_lowered_thread_and_a_panic_is_an_error_not_the_end() {
        let mut thread = JobThread::new("test-jobs".to_owned(), 5);
        let first = thread
            .run(|| Ok((std::thread::current().id(), own_nice())))
            .unwrap()
            .join()
            .unwrap();
        let second = thread
            .run(|| Ok((std::thread::current().id(), own_nice())))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(first.0, second.0, "one thread runs every job");
        assert_ne!(first.0, std::thread::current().id());
        assert_eq!(first.1, own_nice() + 5, "the thread runs five steps lower");

        let mut panicking = thread.run::<()>(|| panic!("a job that panics")).unwrap();
        while !panicking.is_finished() {
            std::thread::yield_now();
        }
        assert!(matches!(panicking.join(), Err(ProjectorError::Task(_))));
        let after = thread.run(|| Ok(7)).unwrap().join().unwrap();
        assert_eq!(after, 7, "the thread takes the jobs after a panic");

        // A job sent while the panicking one is still unwinding is run, not dropped.
        for round in 0..20 {
            let panicking = thread.run::<()>(|| panic!("a job that panics")).unwrap();
            let next = thread.run(move || Ok(round)).unwrap();
            assert!(matches!(panicking.join(), Err(ProjectorError::Task(_))));
            assert_eq!(next.join().unwrap(), round, "the job after a panic runs");
        }
        let id = thread
            .run(|| Ok(std::thread::current().id()))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(
            id, first.0,
            "the same thread goes on after its jobs' panics"
        );
    }

    fn own_nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }
}
