//! The cut points of [`StreamChunker`](crate::StreamChunker), found in two
//! steps so that the costly one can run on several threads.
//!
//! FastCDC's gear hash at byte `p` is `Σ gear[b(p - k)] << k` over the
//! bytes so far: a byte 64 or more places back has been shifted out, so
//! the hash depends on the last 64 bytes only. Within a chunk the scan
//! starts from zero at offset `min`, so from offset `min + 63` on the
//! chunk's hash equals this stream-wide one. Hence:
//!
//! 1. [`find_hits`] hashes a segment of the stream on its own (given the
//!    63 bytes before it) and lists every byte where the strict or the
//!    relaxed mask could cut. Segments are independent: any thread may
//!    take any of them. Hits are rare (about one in 2^19 bytes at the
//!    default sizes); a segment where they are not is marked dense and
//!    scanned byte by byte in step 2 instead, which then costs little
//!    because its chunks end soon after `min`.
//! 2. [`SegmentCutter`] walks the segments in stream order: it hashes the
//!    63 bytes from each chunk's `min` itself (there the chunk's hash
//!    differs from the stream-wide one), then takes the first listed hit
//!    whose mask applies at its offset (strict before `avg`, relaxed
//!    after), or cuts at `max`.
//!
//! The cut points are those of `StreamChunker` exactly, whatever the
//! segments' sizes (the tests compare both on every kind of stream).
//! FastCDC 2020 tests bytes in pairs, the first byte of a pair against the
//! mask shifted left by one; every mask it uses has its top bit clear, so
//! that test is the plain one, and a hit on the first byte of a pair
//! counts only once the pair's second byte exists (at the stream's end it
//! does not).

use crate::cdc::{CdcParams, Gear, gear_tables, masks_for};

/// Bytes of context a segment's hashing needs from before it.
pub const CONTEXT: usize = 63;

/// Where a segment may be cut: offsets into the segment whose stream-wide
/// hash passes the strict mask ([`Hits::STRICT`]), the relaxed one
/// ([`Hits::RELAXED`]), or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hits {
    /// Sorted by offset.
    Listed(Vec<(u32, u8)>),
    /// Too many to list: step 2 hashes the segment itself.
    Dense,
}

impl Hits {
    pub const STRICT: u8 = 1;
    pub const RELAXED: u8 = 2;
}

/// The most hits listed per byte of segment before it counts as dense.
const DENSE_EVERY: usize = 1024;

/// Step 1: the hits of `segment`, whose stream-wide hash starts from the
/// (up to [`CONTEXT`]) bytes `before` it.
pub fn find_hits(params: CdcParams, before: &[u8], segment: &[u8]) -> Hits {
    let (ms, ml) = masks_for(params);
    let (gear, gear_ls) = gear_tables();
    let either = ms & ml;
    let mut hash = roll(gear, 0, &before[before.len().saturating_sub(CONTEXT)..]);
    let cap = segment.len() / DENSE_EVERY + 16;
    let mut hits = Vec::new();
    let mut record = |at: usize, h: u64| -> bool {
        let flags = (u8::from(h & ms == 0) * Hits::STRICT) | (u8::from(h & ml == 0) * Hits::RELAXED);
        if flags != 0 {
            hits.push((at as u32, flags));
        }
        hits.len() <= cap
    };
    // Two halves of the segment hashed side by side: two independent
    // chains of shifts and adds keep more of the core busy than one.
    // Two bytes a step: from one step's hash to the next is one shift and
    // one add; the first byte's hash comes off that chain. `first` is that
    // hash shifted left by one: the masks' top bit is clear, so testing it
    // against them shifted left too is testing the hash.
    let half = (segment.len() / 2) & !1;
    let (a, b) = segment.split_at(half);
    let mut hash_b = roll(gear, 0, &context_after(before, a));
    let (e1, e2) = (either, either << 1);
    let step = |h: &mut u64, x: u8, y: u8| -> (u64, u64) {
        let shifted = *h << 2;
        let g = gear_ls[x as usize];
        *h = shifted.wrapping_add(g.wrapping_add(gear[y as usize]));
        (shifted.wrapping_add(g), *h)
    };
    let mut later = Vec::new();
    for (i, (pa, pb)) in a.chunks_exact(2).zip(b.chunks_exact(2)).enumerate() {
        let (fa, sa) = step(&mut hash, pa[0], pa[1]);
        let (fb, sb) = step(&mut hash_b, pb[0], pb[1]);
        let any = (fa & e2 == 0) | (sa & e1 == 0) | (fb & e2 == 0) | (sb & e1 == 0);
        if any {
            let ok = (fa & e2 != 0 || record(2 * i, fa >> 1)) && (sa & e1 != 0 || record(2 * i + 1, sa));
            if !ok {
                return Hits::Dense;
            }
            if fb & e2 == 0 {
                later.push((half + 2 * i, fb >> 1));
            }
            if sb & e1 == 0 {
                later.push((half + 2 * i + 1, sb));
            }
            if later.len() > cap {
                return Hits::Dense;
            }
        }
    }
    // What the second half has beyond the first (at most three bytes).
    for (i, &x) in b.iter().enumerate().skip(half) {
        hash_b = (hash_b << 1).wrapping_add(gear[x as usize]);
        if hash_b & e1 == 0 {
            later.push((half + i, hash_b));
        }
    }
    for (at, h) in later {
        if !record(at, h) {
            return Hits::Dense;
        }
    }
    Hits::Listed(hits)
}

/// Step 2: walks segments, in stream order and with their [`Hits`], and
/// says where the chunks end; the chunks are `StreamChunker`'s. It holds
/// no chunk bytes, only the last [`CONTEXT`] bytes of the stream, so the
/// caller assembles the chunks from its own buffers (or on other threads).
#[derive(Debug)]
pub struct SegmentCutter {
    params: CdcParams,
    ms: u64,
    ml: u64,
    gear: &'static Gear,
    /// The chunk being found: the stream's bytes `[start, pos)`.
    start: u64,
    pos: u64,
    /// The chunk's hash of its bytes from `min` to `pos`, while it is
    /// being walked byte by byte.
    hash: Option<u64>,
    /// The stream's last (up to) `CONTEXT` bytes before the next segment.
    tail: Vec<u8>,
}

impl SegmentCutter {
    pub fn new(params: CdcParams) -> Self {
        let (ms, ml) = masks_for(params);
        Self {
            params,
            ms,
            ml,
            gear: gear_tables().0,
            start: 0,
            pos: 0,
            hash: None,
            tail: Vec::with_capacity(CONTEXT),
        }
    }

    /// Bytes since the last cut.
    pub fn pending(&self) -> usize {
        (self.pos - self.start) as usize
    }

    /// Walk the stream's next `segment`, whose hits `find_hits` found;
    /// `cut(i)` is called for every chunk that ends right before
    /// `segment[i]` (`0 <= i <= segment.len()`; at 0 the chunk is all
    /// bytes of earlier segments). `ends`: no byte follows the segment
    /// (the stream ends, or a boundary is forced, right after it). Unless
    /// it ends, the caller must know that a byte follows: a hit on a
    /// segment's last byte may count only then.
    pub fn cut(&mut self, segment: &[u8], hits: &Hits, ends: bool, cut: &mut dyn FnMut(usize)) {
        let CdcParams { min, avg, max } = self.params;
        let (min, avg, max) = (min as u64, avg as u64, max as u64);
        let listed = match hits {
            Hits::Listed(v) => Some(&v[..]),
            Hits::Dense => None,
        };
        // A hit on the first byte of a pair (an even offset) needs the
        // pair's second byte.
        let counts = |i: usize, offset: u64| offset % 2 == 1 || i + 1 < segment.len() || !ends;
        let mut next = 0;
        let mut at = 0;
        while at < segment.len() {
            let offset = self.pos - self.start;
            if offset < min {
                let take = ((min - offset) as usize).min(segment.len() - at);
                self.pos += take as u64;
                at += take;
                if self.pos - self.start == min {
                    self.hash = Some(0);
                }
                continue;
            }
            // Bytes `[at, limit)` may be tested: the chunk ends at `max`.
            let limit = at + ((self.start + max - self.pos) as usize).min(segment.len() - at);
            let mut found = None;
            let walked;
            match listed {
                Some(v) if offset >= min + CONTEXT as u64 => {
                    while next < v.len() && (v[next].0 as usize) < at {
                        next += 1;
                    }
                    for &(i, flags) in v[next..].iter().take_while(|(i, _)| (*i as usize) < limit) {
                        let (i, o) = (i as usize, offset + (i as usize - at) as u64);
                        let mask = if o < avg { Hits::STRICT } else { Hits::RELAXED };
                        if flags & mask != 0 && counts(i, o) {
                            found = Some(i);
                            break;
                        }
                    }
                    walked = None;
                }
                _ => {
                    // Byte by byte: the chunk's own hash where it differs
                    // from the stream's (its first 63 bytes from `min`),
                    // and all through a dense segment.
                    let stop = match listed {
                        Some(_) => limit.min(at + (min + CONTEXT as u64 - offset) as usize),
                        None => limit,
                    };
                    let mut h = self.hash.unwrap_or_else(|| self.stream_hash(at));
                    for (i, &b) in segment.iter().enumerate().take(stop).skip(at) {
                        h = (h << 1).wrapping_add(self.gear[b as usize]);
                        let o = offset + (i - at) as u64;
                        let mask = if o < avg { self.ms } else { self.ml };
                        if h & mask == 0 && counts(i, o) {
                            found = Some(i);
                            break;
                        }
                    }
                    walked = Some((h, stop));
                }
            }
            match (found, walked) {
                (Some(i), _) => {
                    self.pos += (i - at) as u64;
                    at = i;
                    self.cut_here(cut, at);
                }
                (None, walked) => {
                    let stop = walked.map_or(limit, |(_, stop)| stop);
                    self.pos += (stop - at) as u64;
                    at = stop;
                    self.hash = walked.map(|(h, _)| h);
                    if self.pos - self.start == max {
                        self.cut_here(cut, at);
                    }
                }
            }
        }
        self.remember_tail(segment);
    }

    /// End the chunk pending (end of stream, or a forced boundary);
    /// whether there was one.
    pub fn finish(&mut self) -> bool {
        let pending = self.pos > self.start;
        self.start = self.pos;
        self.hash = None;
        pending
    }

    fn cut_here(&mut self, cut: &mut dyn FnMut(usize), at: usize) {
        cut(at);
        self.start = self.pos;
        self.hash = None;
    }

    /// The hash of the chunk's last `CONTEXT` bytes, once it is
    /// `min + CONTEXT` bytes long: its own hash. Needed only at a
    /// segment's start (`at == 0`): within a segment the hash is carried.
    fn stream_hash(&self, at: usize) -> u64 {
        debug_assert_eq!(at, 0);
        debug_assert!(self.pos - self.start >= self.params.min as u64 + CONTEXT as u64);
        roll(self.gear, 0, &self.tail)
    }

    fn remember_tail(&mut self, segment: &[u8]) {
        if segment.len() >= CONTEXT {
            self.tail.clear();
            self.tail.extend_from_slice(&segment[segment.len() - CONTEXT..]);
        } else {
            let drop = (self.tail.len() + segment.len()).saturating_sub(CONTEXT);
            self.tail.drain(..drop);
            self.tail.extend_from_slice(segment);
        }
    }
}

/// The context of the segment that follows `segment`: the last
/// [`CONTEXT`] bytes of `before` and `segment` together.
pub fn context_after(before: &[u8], segment: &[u8]) -> Vec<u8> {
    context_after_all(before, [segment])
}

/// [`context_after`] several segments in a row, without joining them.
pub fn context_after_all<'a, I>(before: &'a [u8], segments: I) -> Vec<u8>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: DoubleEndedIterator,
{
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut need = CONTEXT;
    for s in segments.into_iter().rev() {
        let take = need.min(s.len());
        parts.push(&s[s.len() - take..]);
        need -= take;
        if need == 0 {
            break;
        }
    }
    parts.push(&before[before.len().saturating_sub(need)..]);
    parts.reverse();
    parts.concat()
}

/// `hash` carried over `bytes`, one byte at a time.
fn roll(gear: &Gear, hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| (h << 1).wrapping_add(gear[b as usize]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StreamChunker;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// `StreamChunker`'s chunk lengths, with a forced boundary after each
    /// of `parts`.
    fn serial(parts: &[&[u8]], p: CdcParams, step: usize) -> Vec<usize> {
        let mut c = StreamChunker::new(p);
        let mut lens = Vec::new();
        for part in parts {
            for piece in part.chunks(step) {
                c.push(piece, &mut |ch| lens.push(ch.len()));
            }
            c.finish(&mut |ch| lens.push(ch.len()));
        }
        lens
    }

    /// The same through `find_hits` and `SegmentCutter`, each part cut into
    /// segments by `sizes`; `dense` decides which segments are walked. The
    /// chunks are assembled from the cut points, as a caller would.
    fn segmented(
        parts: &[&[u8]],
        p: CdcParams,
        sizes: &mut dyn FnMut() -> usize,
        dense: &mut dyn FnMut() -> bool,
    ) -> Vec<Vec<u8>> {
        let mut cutter = SegmentCutter::new(p);
        let mut out = Vec::new();
        let mut chunk = Vec::new();
        let mut before: Vec<u8> = Vec::new();
        for part in parts {
            let mut rest = *part;
            while !rest.is_empty() {
                let n = sizes().clamp(1, rest.len());
                let (seg, tail) = rest.split_at(n);
                let hits = if dense() { Hits::Dense } else { find_hits(p, &before, seg) };
                let mut from = 0;
                cutter.cut(seg, &hits, tail.is_empty(), &mut |i| {
                    chunk.extend_from_slice(&seg[from..i]);
                    from = i;
                    out.push(std::mem::take(&mut chunk));
                });
                chunk.extend_from_slice(&seg[from..]);
                assert_eq!(cutter.pending(), chunk.len());
                before = context_after(&before, seg);
                rest = tail;
            }
            assert_eq!(cutter.finish(), !chunk.is_empty());
            if !chunk.is_empty() {
                out.push(std::mem::take(&mut chunk));
            }
        }
        assert!(out.iter().all(|c| !c.is_empty()), "an empty chunk");
        out
    }

    fn lens(chunks: &[Vec<u8>]) -> Vec<usize> {
        chunks.iter().map(Vec::len).collect()
    }

    fn corpora() -> Vec<Vec<u8>> {
        let mut rng = StdRng::seed_from_u64(21);
        let random: Vec<u8> = (0..7 << 20).map(|_| rng.random()).collect();
        // Text-like bytes, a run of zeros (cut at max) and a random tail
        // of odd length.
        let mut mixed: Vec<u8> = (0..3 << 20).map(|_| b"etaoin shrdlu\n"[rng.random_range(0..14)]).collect();
        mixed.extend(std::iter::repeat_n(0u8, 900 << 10));
        mixed.extend((0..(300 << 10) + 1).map(|_| rng.random::<u8>()));
        vec![random, mixed]
    }

    #[test]
    fn hits_are_the_stream_hash_passing_a_mask() {
        let p = CdcParams { min: 64 << 10, avg: 64 << 10, max: 256 << 10 };
        let (ms, ml) = masks_for(p);
        let (gear, _) = gear_tables();
        let data = &corpora()[0][..3 << 20];
        let mut want = Vec::new();
        let mut h = 0u64;
        for (i, &b) in data.iter().enumerate() {
            h = (h << 1).wrapping_add(gear[b as usize]);
            let flags = (u8::from(h & ms == 0) * Hits::STRICT) | (u8::from(h & ml == 0) * Hits::RELAXED);
            if flags != 0 {
                want.push((i, flags));
            }
        }
        assert!(want.len() > 20, "{} hits", want.len());
        for split in [0, 1, 62, 63, 64, 1 << 20, (1 << 20) + 1] {
            let from = split.min(data.len());
            let Hits::Listed(got) = find_hits(p, &data[..from], &data[from..]) else { panic!("dense") };
            let got: Vec<(usize, u8)> = got.into_iter().map(|(i, f)| (i as usize + from, f)).collect();
            // Before byte 63 the segment's hash lacks the stream's start.
            let want: Vec<_> = want.iter().copied().filter(|&(i, _)| i >= from.max(63)).collect();
            let got: Vec<_> = got.into_iter().filter(|&(i, _)| i >= from.max(63)).collect();
            assert_eq!(got, want, "segment from {split}");
        }
    }

    #[test]
    fn cuts_are_the_stream_chunkers_whatever_the_segments() {
        let sizes_of = [CdcParams { min: 64 << 10, avg: 128 << 10, max: 256 << 10 }, CdcParams::default()];
        let small_equal = CdcParams { min: 64 << 10, avg: 64 << 10, max: 64 << 10 };
        for data in &corpora() {
            for p in sizes_of.iter().copied().chain([small_equal]) {
                let want = serial(&[data], p, 1 << 20);
                assert!(want.len() >= 3);
                for seg in [1usize, 2, 63, 64, 4097, 1 << 20, 3 << 20, 64 << 20] {
                    let got = segmented(&[data], p, &mut || seg, &mut || false);
                    assert_eq!(lens(&got), want, "segments of {seg} bytes, {p:?}");
                    assert_eq!(got.concat(), *data);
                }
                let mut r = StdRng::seed_from_u64(5);
                let mut sizes = || r.random_range(1..300_000);
                let mut r2 = StdRng::seed_from_u64(6);
                let got = segmented(&[data], p, &mut sizes, &mut || r2.random_bool(0.3));
                assert_eq!(lens(&got), want, "random segments, some walked, {p:?}");
                let got = segmented(&[data], p, &mut || 1 << 20, &mut || true);
                assert_eq!(lens(&got), want, "every segment walked, {p:?}");
            }
        }
    }

    #[test]
    fn forced_boundaries_and_short_streams_cut_alike() {
        let p = CdcParams { min: 64 << 10, avg: 128 << 10, max: 256 << 10 };
        let data = &corpora()[1];
        // Parts ending at every parity and inside the first `min` bytes.
        let cuts = [0, 1, 3, 70_001, 70_002, 400_000, 400_001, 1_500_000, 2_000_003, data.len()];
        let parts: Vec<&[u8]> = cuts.windows(2).map(|w| &data[w[0]..w[1]]).collect();
        let want = serial(&parts, p, 4099);
        for seg in [1usize, 7, 65_536, 1 << 20] {
            let got = segmented(&parts, p, &mut || seg, &mut || false);
            assert_eq!(lens(&got), want, "segments of {seg}");
        }
        for len in [1, 2, (64 << 10) + 1, (64 << 10) + 2, (64 << 10) + 64, (64 << 10) + 65] {
            let part: &[u8] = &data[3 << 20..(3 << 20) + len];
            assert_eq!(
                lens(&segmented(&[part], p, &mut || 3, &mut || false)),
                serial(&[part], p, 5),
                "{len}"
            );
        }
    }

    #[test]
    fn a_segment_of_hits_everywhere_is_dense() {
        // A two-byte pattern whose stream hash passes the relaxed mask at
        // every other byte: too many hits to list.
        let p = CdcParams { min: 64 << 10, avg: 64 << 10, max: 128 << 10 };
        let (gear, _) = gear_tables();
        let (_, ml) = masks_for(p);
        let pattern = (0..=u16::MAX)
            .map(|v| v.to_le_bytes())
            .find(|pat| (0..64).fold(0u64, |h, i| (h << 1).wrapping_add(gear[pat[i % 2] as usize])) & ml == 0)
            .expect("a pattern that hits");
        let seg: Vec<u8> = pattern.iter().copied().cycle().take(1 << 20).collect();
        assert_eq!(find_hits(p, &[], &seg), Hits::Dense);
        let want = serial(&[&seg], p, 1 << 16);
        assert!(want.len() > 8 && want[..want.len() - 1].iter().all(|&l| l < (64 << 10) + 64), "{want:?}");
        for seg_size in [100_000, 1 << 20] {
            let got = segmented(&[&seg], p, &mut || seg_size, &mut || false);
            assert_eq!(lens(&got), want);
        }
    }
}
