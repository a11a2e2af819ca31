//! Kafka's default partitioner, so a key lands in the same partition in the embedded log
//! and in Kafka: `toPositive(murmur2(key)) % partitions` with Kafka's seed. (librdkafka's
//! default partitioner differs, which is why the Kafka backend produces to an explicit
//! partition computed here.)

/// Kafka's `Utils.murmur2`: MurmurHash2, little-endian, seed `0x9747b28c`, as a signed int.
pub fn murmur2(key: &[u8]) -> i32 {
    murmur2::murmur2(key, murmur2::KAFKA_SEED) as i32
}

/// The partition of a key: `(murmur2(key) & 0x7fffffff) % partitions`.
pub fn partition_for(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

/// One of `of` shares of the keys of a topic of `partitions` partitions: a partition's
/// keys split further, as if the topic had `of` times as many partitions. A key's share is
/// taken from the bits of its hash above those that chose its partition, so the shares of
/// one partition are about equally large. What a replay uses to fold a long partition in
/// several passes, each holding fewer customers in memory (see [`crate::Scan::only_share`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyShare {
    index: u32,
    of: u32,
    partitions: u32,
}

impl KeyShare {
    /// Share `index` of `of`, of a topic of `partitions` partitions; `None` unless
    /// `index < of` and `partitions > 0`.
    pub fn new(index: u32, of: u32, partitions: u32) -> Option<Self> {
        (index < of && partitions > 0).then_some(KeyShare {
            index,
            of,
            partitions,
        })
    }

    /// Whether `key` is of this share.
    pub fn holds(&self, key: &[u8]) -> bool {
        self.index_of(key) == self.index
    }

    /// Which of the `of` shares `key` is of (the index of the share that holds it).
    pub fn index_of(&self, key: &[u8]) -> u32 {
        let hash = (murmur2(key) & 0x7fff_ffff) as u32;
        (hash / self.partitions) % self.of
    }

    /// This share's index, from 0.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// How many shares the keys are split in.
    pub fn of(&self) -> u32 {
        self.of
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_own_test_vectors() {
        // From Kafka's UtilsTest.testMurmur2.
        let vectors: [(&str, i32); 6] = [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            ("abc", 479470107),
        ];
        for (key, expected) in vectors {
            assert_eq!(murmur2(key.as_bytes()), expected, "{key}");
        }
    }

    #[test]
    fn partitions_are_positive_and_in_range() {
        for n in 0..10_000u32 {
            let key = format!("customer-{n}");
            assert!(partition_for(key.as_bytes(), 12) < 12);
            assert_eq!(partition_for(key.as_bytes(), 1), 0);
        }
        // A key whose hash is negative still maps by its positive bits, as in Kafka.
        assert_eq!(
            partition_for(b"21", 12),
            ((-973932308i32 & 0x7fffffff) as u32) % 12
        );
    }

    #[test]
    fn every_key_is_in_exactly_one_share_and_the_shares_of_a_partition_are_about_equal() {
        let partitions = 12;
        let of = 4;
        let shares: Vec<KeyShare> = (0..of)
            .map(|index| KeyShare::new(index, of, partitions).unwrap())
            .collect();
        let mut sizes = [0u32; 4];
        for n in 0..48_000 {
            let key = format!("customer-{n}");
            if partition_for(key.as_bytes(), partitions) != 5 {
                continue;
            }
            let holding: Vec<usize> = (0..shares.len())
                .filter(|&at| shares[at].holds(key.as_bytes()))
                .collect();
            assert_eq!(holding.len(), 1, "{key}");
            sizes[holding[0]] += 1;
        }
        let total: u32 = sizes.iter().sum();
        assert!(total > 3_500, "{total}");
        for size in sizes {
            assert!(
                size > total / 4 * 8 / 10 && size < total / 4 * 12 / 10,
                "{sizes:?}"
            );
        }
        assert_eq!(KeyShare::new(4, 4, 12), None);
        assert_eq!(KeyShare::new(0, 1, 0), None);
    }
}
