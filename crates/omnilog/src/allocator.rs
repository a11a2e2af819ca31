//! The allocator's configuration: how long jemalloc keeps memory it no longer uses, and who
//! gives it back.
//!
//! jemalloc reads its options once, before the first allocation, from the
//! `_rjem_malloc_conf` string this module exports (the `tikv-jemalloc-sys` build prefixes
//! its symbols), then from `_RJEM_MALLOC_CONF` in the environment, which wins: set
//! `_RJEM_MALLOC_CONF=dirty_decay_ms:10000` to trade memory for fewer page faults.
//!
//! - `dirty_decay_ms:500`: freed pages go back to the kernel over half a second, not
//!   jemalloc's default ten. A server under load frees and reuses the same memory many times
//!   a second, so half a second is enough not to fault it in again: loading 1M events
//!   through the API (`benches/serve_load.py`, three alternated pairs) took 6.81, 6.43 and
//!   6.13 s of server CPU against 6.49, 7.17 and 6.33 s at one second (233k to 241k page
//!   faults against 228k to 234k); at one second against ten, 7.47, 7.26 and 9.60 s against
//!   6.98, 7.45 and 7.86 s, peaks of 635 to 704 MB against 669 to 672 MB. A replay's passes
//!   free their records as they end, and what is not given back yet is part of its peak,
//!   more of a long replay's: three alternated pairs of `/usr/bin/time omnilog replay`,
//!   10M events peaked at 178.9, 189.7 and 180.4 MB against 192.6, 188.9 and 194.5 MB at
//!   one second (1M: 156.6, 161.0 and 156.0 against 157.0, 163.0 and 160.3 MB), 1.15 times
//!   the 1M median where one second gave 1.20 (and 1.25 in an earlier set), in the same
//!   time; at ten seconds 10M peaked at 216 MB (docs/benchmarks-journal.md, "2026-12-06, evening").
//! - `background_thread:true`: jemalloc's own threads give back what has decayed. Without
//!   them a thread gives memory back only when it allocates or frees, so a server's
//!   threads that went idle after a burst kept what they had freed (the check of
//!   `tests/hostile.rs`, which wants it back within 20 s).
//!
//! Unsafe code only to export the option string under the C name jemalloc reads.

/// jemalloc's options for every command (see the module's docs).
#[cfg(feature = "jemalloc")]
const OPTIONS: &std::ffi::CStr = c"background_thread:true,dirty_decay_ms:500";

/// A pointer to a C string, as jemalloc declares `malloc_conf`: `const char *`.
#[cfg(feature = "jemalloc")]
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a string literal, never written: sharing it between threads
// is sharing an immutable `&'static CStr`.
#[cfg(feature = "jemalloc")]
#[allow(unsafe_code)]
unsafe impl Sync for MallocConf {}

/// The options jemalloc reads at its start (`malloc_conf`, prefixed by this build).
#[cfg(feature = "jemalloc")]
#[allow(unsafe_code, non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: MallocConf = MallocConf(OPTIONS.as_ptr());

#[cfg(all(test, feature = "jemalloc"))]
mod tests {
    use tikv_jemalloc_ctl::{opt, raw};

    #[test]
    #[allow(unsafe_code)]
    fn jemalloc_runs_with_the_options_exported() {
        if std::env::var_os("_RJEM_MALLOC_CONF").is_some() {
            return;
        }
        // Touches the allocator, so its options are read, whatever ran before.
        drop(Box::new(0u64));
        // SAFETY: `opt.dirty_decay_ms` is a jemalloc option of type `ssize_t`, read only
        // (`tikv-jemalloc-ctl` has no safe reader for it, as it has for the other).
        let decay = unsafe { raw::read::<isize>(b"opt.dirty_decay_ms\0").unwrap() };
        assert_eq!(decay, 500);
        assert!(opt::background_thread::read().unwrap());
    }
}
