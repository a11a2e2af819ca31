//! An event's time as seconds or milliseconds since 1970, as chrono's `timestamp` and
//! `timestamp_millis` give them, with the day's part taken from the last time converted on
//! the thread when it fell on the same day.
//!
//! Every view turns each event's `occurred_at` into a number, some more than once, and
//! chrono computes the number of the date's day from its year and ordinal each time: about
//! 35M instructions of the views' workers in `valgrind --tool=callgrind omnilog replay` of
//! the 200k history, and the replay's total went from 1,984.6M to 1,954.8M with this module
//! (docs/benchmarks-journal.md). A fold's events fall on a few days, so the day is nearly always
//! the one before. The cache is a pure function's memo: what it answers does not depend on
//! what came before, so folds stay pure.

use std::cell::Cell;

use chrono::{DateTime, NaiveDate, Timelike, Utc};

thread_local! {
    /// The date of the last time converted on this thread, and its midnight in seconds.
    static LAST_DAY: Cell<Option<(NaiveDate, i64)>> = const { Cell::new(None) };
}

/// `at.timestamp()`: the non-leap seconds since 1970-01-01T00:00:00Z.
pub fn seconds(at: &DateTime<Utc>) -> i64 {
    // The UTC fields as stored: `date_naive` and `Timelike` on a `DateTime` go through
    // the time zone's offset, which costs more than the cache saves.
    let at = at.naive_utc();
    let date = at.date();
    let midnight = LAST_DAY.with(|last| match last.get() {
        Some((known, midnight)) if known == date => midnight,
        _ => {
            let midnight = date.and_time(chrono::NaiveTime::MIN).and_utc().timestamp();
            last.set(Some((date, midnight)));
            midnight
        }
    });
    midnight + i64::from(at.time().num_seconds_from_midnight())
}

/// `at.timestamp_millis()`: the non-leap milliseconds since 1970-01-01T00:00:00Z.
pub fn millis(at: &DateTime<Utc>) -> i64 {
    seconds(at) * 1000 + i64::from(at.timestamp_subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(at: &DateTime<Utc>) {
        assert_eq!(seconds(at), at.timestamp(), "{at:?}");
        assert_eq!(millis(at), at.timestamp_millis(), "{at:?}");
    }

    #[test]
    fn times_at_the_edges_convert_as_chrono_converts_them() {
        for at in [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            DateTime::UNIX_EPOCH,
            DateTime::from_timestamp(-1, 999_999_999).unwrap(),
            // A leap second's nanoseconds.
            DateTime::from_timestamp(1_483_228_799, 1_500_000_000).unwrap(),
        ] {
            check(&at);
        }
    }

    proptest::proptest! {
        /// Runs of one day (as a fold's events are), then of days far apart: the day
        /// remembered from the time before never changes an answer.
        #[test]
        fn times_convert_as_chrono_converts_them_whatever_came_before(
            near in proptest::collection::vec(1_772_400_000i64..1_772_700_000, 1..64),
            far in proptest::collection::vec(-200_000_000_000i64..200_000_000_000, 1..64),
            nanos in 0u32..1_000_000_000,
        ) {
            for second in near.into_iter().chain(far) {
                check(&DateTime::from_timestamp(second, nanos).unwrap());
            }
        }
    }
}
