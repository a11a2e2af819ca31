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
}
