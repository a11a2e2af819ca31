//! Times [`omnilog_events::parse_batch`] (validation included) over a JSONL history, in
//! bodies of 1,000 events and of one event: the best of five passes, in nanoseconds an
//! event. The figures of `current_raw`'s doc (simd-json against serde_json) come from it.
//!
//! ```text
//! cargo run --release -p omnilog-events --example parse_batch -- HISTORY.jsonl
//! ```
//!
//! HISTORY.jsonl is what `omnilog export --topics all` writes.

use std::io::Write as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: parse_batch HISTORY.jsonl")?;
    let text = std::fs::read_to_string(path)?;
    let lines: Vec<&str> = text.lines().filter(|line| !line.is_empty()).collect();
    for per_body in [1_000, 1] {
        let bodies: Vec<String> = lines
            .chunks(per_body)
            .map(|chunk| format!("[{}]", chunk.join(",")))
            .collect();
        let mut best = f64::MAX;
        for _ in 0..5 {
            let started = std::time::Instant::now();
            let mut parsed = 0;
            for body in &bodies {
                parsed += omnilog_events::parse_batch(body.as_bytes())?.len();
            }
            best = best.min(started.elapsed().as_secs_f64());
            assert_eq!(parsed, lines.len(), "every event parsed");
        }
        writeln!(
            std::io::stdout(),
            "{per_body} a body: {:.0} ns an event",
            best * 1e9 / lines.len() as f64
        )?;
    }
    Ok(())
}
