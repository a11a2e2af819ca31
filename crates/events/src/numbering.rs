//! Numbers for the customers a decoding thread decodes, so that the views' folds find a
//! customer's records without hashing its id for every event (why, and what it saved, in
//! `omnilog_views`'s `state/slots.rs`). The decoder already decodes a batch's equal
//! customers once ([`crate::EventDecoder`]); numbered there, once a customer and batch.
//! A number is a hint, not an identity: a view compares the id of what it finds with the
//! id it looks up, so a wrong number (an id changed after it was numbered, say) costs a
//! lookup and nothing else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::model::CustomerId;

/// A number a [`CustomerNumbering`] gave a customer's id, or none. Not part of the customer:
/// the same customer decoded twice may carry two numbers, and [`crate::CustomerRef`]'s
/// equality leaves it out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CustomerNumber {
    /// The numbering's own number (0: no number).
    numbering: u32,
    number: u32,
}

impl CustomerNumber {
    /// No number: a view looks the customer up by its id.
    pub const NONE: CustomerNumber = CustomerNumber {
        numbering: 0,
        number: 0,
    };

    /// The numbering that gave it (never 0) and the number, if it is one.
    pub fn parts(self) -> Option<(u32, u32)> {
        (self.numbering != 0).then_some((self.numbering, self.number))
    }
}

/// How many ids a numbering remembers before it starts again as a new numbering: more
/// customers than the bench's 1M-event history has (23,269), a few passes' worth of a 10M
/// one's (231,495: its decoder starts a new numbering every 65,536 new ids, and each view
/// then forgets the places it remembered). Its map holds then about 7.5 MB: hashbrown
/// keeps 65,536 entries in 131,072 buckets, each a 56-byte entry (a 48-byte
/// `CustomerId` and its number, aligned) and a control byte. A view remembers a place per
/// number, four bytes each, so numbers stay below this.
pub const MOST_NUMBERED: usize = 1 << 16;

/// Numbers given to numberings, so that two numberings never share one.
static NUMBERINGS: AtomicU32 = AtomicU32::new(1);

/// Gives each customer id it is shown a number, the same for as long as it remembers the id
/// (up to `MOST_NUMBERED` ids; then it starts again, as a new numbering). Owned by a decoding
/// thread and lent to each batch's [`crate::EventDecoder`].
#[derive(Debug, Default)]
pub struct CustomerNumbering {
    /// Its own number, taken when it first numbers an id (0: none yet).
    numbering: u32,
    /// Randomly seeded: it holds ids chosen by producers for as long as the thread lives.
    by_id: HashMap<CustomerId, u32, foldhash::fast::RandomState>,
}

impl CustomerNumbering {
    pub fn new() -> Self {
        CustomerNumbering::default()
    }

    /// The number of `id`.
    pub fn number(&mut self, id: &str) -> CustomerNumber {
        if let Some(&number) = self.by_id.get(id) {
            return CustomerNumber {
                numbering: self.numbering,
                number,
            };
        }
        if self.numbering == 0 || self.by_id.len() >= MOST_NUMBERED {
            self.by_id.clear();
            // 0 is "no number": skipped when the counter wraps (numbers are hints, so a
            // numbering's number used again after four billion costs lookups, not records).
            self.numbering = NUMBERINGS.fetch_add(1, Ordering::Relaxed).max(1);
        }
        let number = self.by_id.len() as u32;
        self.by_id.insert(CustomerId::from(id), number);
        CustomerNumber {
            numbering: self.numbering,
            number,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_keeps_its_number_and_ids_get_numbers_of_their_own() {
        let mut numbering = CustomerNumbering::new();
        let first = numbering.number("c-1").parts().unwrap();
        let second = numbering.number("c-2").parts().unwrap();
        assert_eq!(numbering.number("c-1").parts(), Some(first));
        assert_eq!(first.0, second.0);
        assert_ne!(first.1, second.1);
        assert_eq!(CustomerNumber::NONE.parts(), None);
        assert_eq!(numbering.number("c-1"), numbering.number("c-1"));
        assert_ne!(numbering.number("c-1"), numbering.number("c-2"));
    }

    #[test]
    fn two_numberings_never_share_a_number_of_their_own() {
        let (mut one, mut other) = (CustomerNumbering::new(), CustomerNumbering::new());
        let a = one.number("c-1").parts().unwrap();
        let b = other.number("c-1").parts().unwrap();
        assert_ne!(a.0, b.0);
    }

    #[test]
    fn a_full_numbering_starts_again_as_another() {
        let mut numbering = CustomerNumbering::new();
        let first = numbering.number("c-0").parts().unwrap();
        for i in 1..MOST_NUMBERED {
            numbering.number(&format!("c-{i}"));
        }
        // Known ids keep their numbers while it is full; a new one starts it again.
        assert_eq!(numbering.number("c-0").parts(), Some(first));
        let after = numbering.number("c-new").parts().unwrap();
        assert_ne!(after.0, first.0);
        assert_eq!(after.1, 0);
        assert!(numbering.by_id.len() == 1);
    }

    #[test]
    fn numbers_do_not_make_customers_differ() {
        let customer = crate::CustomerRef {
            id: Some("c-1".into()),
            ..crate::CustomerRef::default()
        };
        let numbered = crate::CustomerRef {
            number: CustomerNumbering::new().number("c-1"),
            ..customer.clone()
        };
        assert_eq!(customer, numbered);
        let other = crate::CustomerRef {
            id: Some("c-2".into()),
            ..numbered.clone()
        };
        assert_ne!(numbered, other);
    }
}
