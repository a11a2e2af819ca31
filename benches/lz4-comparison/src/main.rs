//! Compresses a file in 256 KiB blocks (about a group commit's batch) with lz4_flex, then
//! decompresses and compresses every block twenty times with lz4_flex and with the reference
//! LZ4 (the `lz4` crate), three rounds, and prints each coder's rate (`Cargo.toml` says how
//! to see lz4_flex's fast coders).

use std::time::Instant;

const BLOCK: usize = 256 * 1024;
const TIMES: usize = 20;

fn main() {
    let path = std::env::args().nth(1).expect("usage: lz4-comparison FILE");
    let data = std::fs::read(&path).expect("reading the file");
    let blocks: Vec<(Vec<u8>, usize)> = data
        .chunks(BLOCK)
        .map(|block| (lz4_flex::block::compress(block), block.len()))
        .collect();
    let plain: usize = blocks.iter().map(|(_, len)| len).sum();
    let stored: usize = blocks.iter().map(|(block, _)| block.len()).sum();
    println!(
        "{plain} bytes in {} blocks, {:.2}x smaller",
        blocks.len(),
        plain as f64 / stored as f64
    );
    let rate = |seconds: f64| plain as f64 * TIMES as f64 / seconds / 1e6;
    let mut out = vec![0u8; lz4_flex::block::get_maximum_output_size(BLOCK) + 64];
    for round in 0..3 {
        let started = Instant::now();
        for _ in 0..TIMES {
            for (block, len) in &blocks {
                let written = lz4_flex::block::decompress_into(block, &mut out[..*len]).unwrap();
                assert_eq!(written, *len);
            }
        }
        let flex = rate(started.elapsed().as_secs_f64());
        let started = Instant::now();
        for _ in 0..TIMES {
            for (block, len) in &blocks {
                let written =
                    lz4::block::decompress_to_buffer(block, Some(*len as i32), &mut out[..*len])
                        .unwrap();
                assert_eq!(written, *len);
            }
        }
        let reference = rate(started.elapsed().as_secs_f64());
        let started = Instant::now();
        for _ in 0..TIMES {
            for block in data.chunks(BLOCK) {
                lz4_flex::block::compress_into(block, &mut out).unwrap();
            }
        }
        let flex_compress = rate(started.elapsed().as_secs_f64());
        let started = Instant::now();
        for _ in 0..TIMES {
            for block in data.chunks(BLOCK) {
                lz4::block::compress_to_buffer(block, None, false, &mut out).unwrap();
            }
        }
        let reference_compress = rate(started.elapsed().as_secs_f64());
        println!(
            "round {round}: decompress lz4_flex {flex:.0} MB/s, reference {reference:.0} MB/s; \
             compress lz4_flex {flex_compress:.0} MB/s, reference {reference_compress:.0} MB/s"
        );
    }
}
