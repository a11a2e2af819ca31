//! The allocator's tuning for the commands that serve: how long mimalloc keeps memory it
//! no longer uses before giving it back to the kernel.
//!
//! mimalloc gives freed memory back ("purges" it) 10 ms after it fell free. A server under
//! load frees and reuses the same memory over and over (request bodies, decoded events, the
//! encodings of checkpoints), so each reuse faulted its pages in again and the kernel
//! zeroed them. Kept for a second instead (mimalloc waits ten times as long before giving
//! back a whole arena), six alternated pairs of `python3
//! benches/serve_load.py` (1M events through the API, every view caught up): about 305k
//! page faults instead of 615k, the server's CPU 11.9 s instead of 13.5 s and 156.5k events/s
//! instead of 137.5k (medians), for about 150 MB more at the peak (docs/benchmarks.md,
//! "2026-12-03, midday"). `omnilog replay` keeps the default: there the same change saved no
//! time and cost 80 to 110 MB. `omnilog bench` runs its server inside its own process, so it
//! takes the server's setting for all its stages, its in-process replays too (its row of
//! `omnilog replay` in a child process keeps the default).
//!
//! `MIMALLOC_PURGE_DELAY` in the environment (milliseconds; mimalloc reads it itself) wins
//! over this.

/// mimalloc 2's `mi_option_purge_delay`, the sixteenth of its options (`mimalloc.h`):
/// `libmimalloc-sys` names the options on either side of it, not this one.
#[cfg(feature = "mimalloc")]
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long a server keeps freed memory before giving it back, in milliseconds.
pub const SERVER_PURGE_DELAY_MS: i32 = 1_000;

/// Makes mimalloc keep freed memory [`SERVER_PURGE_DELAY_MS`] before giving it back, unless
/// the environment sets `MIMALLOC_PURGE_DELAY`. Call it first thing, before other threads
/// start: mimalloc's options are plain values, not meant to change under its feet.
/// (Unsafe code only to call mimalloc's C API, which has no safe wrapper for its options.)
#[allow(unsafe_code)]
pub fn tune_for_server() {
    #[cfg(feature = "mimalloc")]
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's options to a valid value (any delay is), on the
        // process's only thread.
        unsafe {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, SERVER_PURGE_DELAY_MS.into());
        }
    }
}

/// How often, at most, a thread of a server gives back what it keeps when it goes idle.
const IDLE_COLLECT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// For a server's async threads as they go idle (`on_thread_park`): at most once every
/// [`IDLE_COLLECT_EVERY`] per thread, has mimalloc give back the memory this thread's heap
/// holds free and that of threads that ended (the blocking pool's, ten seconds after their
/// last job), without waiting for the purge delay. mimalloc purges only when a thread
/// allocates or frees, so memory freed by a thread that then went idle, or ended, stayed
/// with the process: after `tests/hostile.rs`'s burst a server kept 116 to 124 MB of
/// anonymous memory 20 s later in two runs of four (56 to 86 MB right after the burst with
/// a 10 ms purge delay).
#[allow(unsafe_code)]
pub fn give_back_when_idle() {
    #[cfg(feature = "mimalloc")]
    {
        thread_local! {
            static LAST: std::cell::Cell<Option<std::time::Instant>> =
                const { std::cell::Cell::new(None) };
        }
        let now = std::time::Instant::now();
        let due = LAST.with(|last| {
            let due = last
                .get()
                .is_none_or(|at| now.duration_since(at) >= IDLE_COLLECT_EVERY);
            if due {
                last.set(Some(now));
            }
            due
        });
        if due {
            // SAFETY: `mi_collect` may be called from any thread at any time.
            unsafe { libmimalloc_sys::mi_collect(true) };
        }
    }
}

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn the_option_set_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // The purge delay's default is 10 ms; the options beside it default to 1
        // (`eager_commit_delay`) and 0 (`use_numa_nodes`).
        // SAFETY: reads options; nothing else in this test binary sets them.
        unsafe {
            assert_eq!(libmimalloc_sys::mi_option_get(PURGE_DELAY - 1), 1);
            assert_eq!(libmimalloc_sys::mi_option_get(PURGE_DELAY), 10);
            assert_eq!(libmimalloc_sys::mi_option_get(PURGE_DELAY + 1), 0);
        }
        tune_for_server();
        // SAFETY: as above.
        let set = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(set, std::ffi::c_long::from(SERVER_PURGE_DELAY_MS));
    }
}
