//! Content-defined chunking of a stream with FastCDC (2020, normalization
//! level 1). Cut points depend only on content, never on how the bytes were
//! split into `push` calls.

use std::borrow::Cow;

use fastcdc::v2020::{Normalization, select_masks};

/// Minimum, average and maximum chunk size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CdcParams {
    pub min: usize,
    pub avg: usize,
    pub max: usize,
}

impl Default for CdcParams {
    fn default() -> Self {
        Self { min: 256 << 10, avg: 1 << 20, max: 4 << 20 }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid chunk sizes min={min} avg={avg} max={max}: need 64 KiB <= min <= avg <= max <= 16 MiB, avg a power of two, all even"
)]
pub struct CdcParamsError {
    pub min: usize,
    pub avg: usize,
    pub max: usize,
}

impl CdcParams {
    pub fn validate(self) -> Result<Self, CdcParamsError> {
        let Self { min, avg, max } = self;
        let ok = (64 << 10..=1 << 20).contains(&min)
            && min <= avg
            && avg <= max
            && avg.is_power_of_two()
            && avg <= 4 << 20
            && max <= 16 << 20
            && min % 2 == 0
            && max % 2 == 0;
        if ok { Ok(self) } else { Err(CdcParamsError { min, avg, max }) }
    }
}

/// Cuts a stream into chunks as its bytes arrive, with the cut points of
/// `fastcdc::v2020::cut` over the whole stream.
///
/// The gear hash is carried from one `push` to the next, so every byte is
/// hashed once and copied once, from the caller's slice into the buffer
/// that becomes its chunk; a complete chunk is handed out as that buffer,
/// without a copy. Memory: the chunk being filled (at most `max` bytes).
///
/// The scan is FastCDC 2020's (the crate's gear tables and masks): from
/// `min` on, bytes are tested in pairs, the strict mask before `avg` and
/// the relaxed one after; a test that hits at byte `a` cuts before `a`; a
/// chunk reaching `max` bytes is cut there; the stream's end cuts what is
/// left.
#[derive(Debug)]
pub struct StreamChunker {
    params: CdcParams,
    /// Strict and relaxed masks, and both shifted left by one.
    masks: [u64; 4],
    gear: &'static [u64; 256],
    gear_ls: &'static [u64; 256],
    /// The chunk being filled.
    chunk: Vec<u8>,
    /// The next pair of bytes to test: bytes `2 * pair` and `2 * pair + 1`.
    pair: usize,
    hash: u64,
}

impl StreamChunker {
    pub fn new(params: CdcParams) -> Self {
        let (ms, ml) = masks_for(params);
        let (gear, gear_ls) = gear_tables();
        Self {
            params,
            masks: [ms, ml, ms << 1, ml << 1],
            gear,
            gear_ls,
            chunk: Vec::new(),
            pair: params.min / 2,
            hash: 0,
        }
    }

    /// Bytes waiting for their chunk to be cut.
    pub fn pending(&self) -> usize {
        self.chunk.len()
    }

    /// Feed bytes; `emit` receives every chunk completed so far.
    pub fn push(&mut self, mut data: &[u8], emit: &mut dyn FnMut(Vec<u8>)) {
        while !data.is_empty() {
            if self.chunk.capacity() == 0 {
                self.chunk.reserve_exact(self.params.max);
            }
            match self.scan(data) {
                Cut::Within(n) => {
                    self.chunk.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    self.cut(emit);
                }
                Cut::BeforeLast => {
                    // The hit was on the chunk's last byte, already held:
                    // it begins the next chunk.
                    let last = self.chunk.pop().expect("a byte before the cut");
                    self.cut(emit);
                    self.chunk.reserve_exact(self.params.max);
                    self.chunk.push(last);
                }
                Cut::None => {
                    self.chunk.extend_from_slice(data);
                    data = &[];
                }
            }
        }
    }

    /// Cut everything pending (end of stream, or a forced boundary).
    pub fn finish(&mut self, emit: &mut dyn FnMut(Vec<u8>)) {
        if !self.chunk.is_empty() {
            self.cut(emit);
        }
    }

    fn cut(&mut self, emit: &mut dyn FnMut(Vec<u8>)) {
        emit(std::mem::take(&mut self.chunk));
        self.pair = self.params.min / 2;
        self.hash = 0;
    }

    /// Test the pairs that `data`, appended to the chunk, completes.
    fn scan(&mut self, data: &[u8]) -> Cut {
        let held = self.chunk.len();
        let end = held + data.len();
        let byte = |i: usize| if i < held { self.chunk[i] } else { data[i - held] };
        let [ms, ml, ms_ls, ml_ls] = self.masks;
        let (gear, gear_ls) = (self.gear, self.gear_ls);
        let center = self.params.avg / 2;
        let last = self.params.max / 2;
        let mut pair = self.pair;
        let mut hash = self.hash;
        let found = |at: usize| if at < held { Cut::BeforeLast } else { Cut::Within(at - held) };
        // A pair whose first byte is the chunk's last (an odd chunk length).
        if pair < last && 2 * pair < held && 2 * pair + 1 < end {
            let (mask, mask_ls) = if pair < center { (ms, ms_ls) } else { (ml, ml_ls) };
            hash = (hash << 2).wrapping_add(gear_ls[byte(2 * pair) as usize]);
            if hash & mask_ls == 0 {
                return found(2 * pair);
            }
            hash = hash.wrapping_add(gear[byte(2 * pair + 1) as usize]);
            if hash & mask == 0 {
                return found(2 * pair + 1);
            }
            pair += 1;
        }
        // Every further pair lies in `data`, from `2 * pair - held` on.
        let limit = (end / 2).min(last);
        if pair < limit {
            let src = &data[2 * pair - held..];
            let mut scan = |from: usize, to: usize, mask: u64, mask_ls: u64| -> Option<usize> {
                let pairs = src[2 * (from - pair)..2 * (to - pair)].chunks_exact(2);
                for (p, two) in (from..).zip(pairs) {
                    hash = (hash << 2).wrapping_add(gear_ls[two[0] as usize]);
                    if hash & mask_ls == 0 {
                        return Some(2 * p);
                    }
                    hash = hash.wrapping_add(gear[two[1] as usize]);
                    if hash & mask == 0 {
                        return Some(2 * p + 1);
                    }
                }
                None
            };
            let split = center.clamp(pair, limit);
            let hit = scan(pair, split, ms, ms_ls).or_else(|| scan(split, limit, ml, ml_ls));
            if let Some(at) = hit {
                return Cut::Within(at - held);
            }
            pair = limit;
        }
        self.pair = pair;
        self.hash = hash;
        if end >= self.params.max { Cut::Within(self.params.max - held) } else { Cut::None }
    }
}

/// Where the bytes pushed complete a chunk.
enum Cut {
    /// After this many bytes of the pushed slice.
    Within(usize),
    /// Before the last byte the chunk already holds.
    BeforeLast,
    /// Not yet.
    None,
}

/// A gear table: a pseudo-random value per byte.
pub(crate) type Gear = [u64; 256];

/// FastCDC 2020's strict and relaxed masks for `params.avg` (normalization
/// level 1). Their top bit is clear (the crate's masks use 48 bits at
/// most), which `segments` relies on.
pub(crate) fn masks_for(params: CdcParams) -> (u64, u64) {
    let (ms, ml) = select_masks(params.avg, Normalization::Level1);
    assert!((ms | ml) >> 63 == 0, "a FastCDC mask with its top bit set");
    (ms, ml)
}

/// FastCDC 2020's gear table and its copy shifted left by one: the crate's
/// own (seed 0 borrows them, unchanged).
pub(crate) fn gear_tables() -> (&'static Gear, &'static Gear) {
    match fastcdc::v2020::get_gear_with_seed(0) {
        (Cow::Borrowed(g), Cow::Borrowed(ls)) => {
            (g.try_into().expect("256 gear values"), ls.try_into().expect("256 gear values"))
        }
        _ => unreachable!("seed 0 borrows the crate's tables"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn chunk_all(data: &[u8], step: usize) -> Vec<Vec<u8>> {
        let mut c = StreamChunker::new(CdcParams::default());
        let mut out = Vec::new();
        for piece in data.chunks(step) {
            c.push(piece, &mut |ch| out.push(ch));
        }
        c.finish(&mut |ch| out.push(ch));
        out
    }

    #[test]
    fn cuts_do_not_depend_on_push_sizes() {
        let mut rng = StdRng::seed_from_u64(1);
        let data: Vec<u8> = (0..12 << 20).map(|_| rng.random()).collect();
        let a = chunk_all(&data, 1 << 20);
        let b = chunk_all(&data, 4099);
        assert_eq!(a, b);
        assert_eq!(a.concat(), data);
        assert!(a.len() > 4, "{} chunks", a.len());
        assert!(a.iter().all(|c| c.len() <= 4 << 20));
    }

    /// The cut points of `fastcdc::v2020::cut` applied to the whole
    /// stream, one chunk after the other.
    fn reference_cuts(data: &[u8], p: CdcParams) -> Vec<usize> {
        let (ms, ml) = select_masks(p.avg, Normalization::Level1);
        let mut lens = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let (_, at) = fastcdc::v2020::cut(&data[pos..], p.min, p.avg, p.max, ms, ml, ms << 1, ml << 1);
            lens.push(at);
            pos += at;
        }
        lens
    }

    fn cuts_with(data: &[u8], p: CdcParams, steps: &mut dyn FnMut() -> usize) -> Vec<usize> {
        let mut c = StreamChunker::new(p);
        let mut lens = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let n = steps().clamp(1, rest.len());
            c.push(&rest[..n], &mut |ch| lens.push(ch.len()));
            rest = &rest[n..];
        }
        c.finish(&mut |ch| lens.push(ch.len()));
        lens
    }

    #[test]
    fn cuts_are_fastcdc_2020_over_the_whole_stream() {
        let small = CdcParams { min: 64 << 10, avg: 128 << 10, max: 256 << 10 };
        let mut rng = StdRng::seed_from_u64(3);
        let random: Vec<u8> = (0..6 << 20).map(|_| rng.random()).collect();
        // Text-like bytes (few distinct values), runs of zeros (cut at max)
        // and a tail of every length class.
        let mut mixed: Vec<u8> = (0..3 << 20).map(|_| b"etaoin shrdlu\n"[rng.random_range(0..14)]).collect();
        mixed.extend(std::iter::repeat_n(0u8, 700 << 10));
        mixed.extend((0..(300 << 10) + 1).map(|_| rng.random::<u8>()));
        for data in [&random, &mixed] {
            for p in [small, CdcParams::default()] {
                let want = reference_cuts(data, p);
                assert_eq!(want.iter().sum::<usize>(), data.len());
                assert!(want.len() >= 3, "{} chunks", want.len());
                for step in [1usize, 2, 3, 4099, 65536, 1 << 20, 8 << 20] {
                    assert_eq!(cuts_with(data, p, &mut || step), want, "pushes of {step} bytes, {p:?}");
                }
                let mut r = StdRng::seed_from_u64(4);
                assert_eq!(
                    cuts_with(data, p, &mut || r.random_range(1..200_000)),
                    want,
                    "random pushes, {p:?}"
                );
            }
        }
        // Streams ending inside the first `min` bytes, at odd lengths, and
        // just past `min`.
        for len in [1, 2, 3, (64 << 10) - 1, 64 << 10, (64 << 10) + 1, (64 << 10) + 2, (64 << 10) + 3] {
            let data = &random[..len];
            assert_eq!(cuts_with(data, small, &mut || 5), reference_cuts(data, small), "{len} bytes");
        }
    }

    #[test]
    fn insertion_shifts_few_chunks() {
        let mut rng = StdRng::seed_from_u64(2);
        let data: Vec<u8> = (0..16 << 20).map(|_| rng.random()).collect();
        let mut edited = data.clone();
        edited.splice(8 << 20..8 << 20, b"inserted".iter().copied());
        let a = chunk_all(&data, 1 << 16);
        let b = chunk_all(&edited, 1 << 16);
        let common = b.iter().filter(|c| a.contains(c)).count();
        assert!(common + 3 >= b.len(), "{common} of {} chunks kept", b.len());
    }

    #[test]
    fn params_are_checked() {
        assert!(CdcParams::default().validate().is_ok());
        assert!(CdcParams { min: 1024, avg: 4096, max: 8192 }.validate().is_err());
        assert!(CdcParams { min: 256 << 10, avg: 3 << 20, max: 4 << 20 }.validate().is_err());
    }
}
