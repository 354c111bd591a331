//! How fast chunk boundaries are found on one thread: `find_hits` (the
//! scanners' step, over 1 MiB segments) and `StreamChunker` (everything on
//! one thread), on random bytes and on text-like bytes.
//!
//! `cargo bench -p chunker --bench boundaries`; the figures are MB/s, the
//! best of five passes over 64 MiB. Written up in docs/benchmarks.md.

use std::hint::black_box;
use std::time::Instant;

use chunker::segments::{context_after, find_hits};
use chunker::{CdcParams, StreamChunker};

const LEN: usize = 64 << 20;
const SEGMENT: usize = 1 << 20;

/// A xorshift generator: the bench needs no crate for its bytes.
fn bytes(len: usize, text: bool) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let words: Vec<&[u8]> =
        ["the ", "of ", "static ", "int ", "return ", "struct ", "(", ");\n", "\t", "if ", "->", "0x1f, "]
            .iter()
            .map(|w| w.as_bytes())
            .collect();
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if text {
            out.extend_from_slice(words[(x % words.len() as u64) as usize]);
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// MB/s of `f` over `LEN` bytes, the best of five.
fn best(f: &mut dyn FnMut() -> usize) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            LEN as f64 / t.elapsed().as_secs_f64() / 1e6
        })
        .fold(0.0, f64::max)
}

fn main() {
    let p = CdcParams::default();
    for (name, data) in [("random", bytes(LEN, false)), ("text", bytes(LEN, true))] {
        let hits = best(&mut || {
            let mut before = Vec::new();
            let mut n = 0;
            for seg in data.chunks(SEGMENT) {
                n += match find_hits(p, &before, seg) {
                    chunker::segments::Hits::Listed(v) => v.len(),
                    chunker::segments::Hits::Dense => 1,
                };
                before = context_after(&before, seg);
            }
            n
        });
        let stream = best(&mut || {
            let mut c = StreamChunker::new(p);
            let mut n = 0;
            c.push(&data, &mut |ch| n += ch.len());
            c.finish(&mut |ch| n += ch.len());
            n
        });
        println!("{name:>6}: find_hits {hits:>6.0} MB/s   StreamChunker {stream:>6.0} MB/s");
    }
}
