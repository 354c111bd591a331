//! Content-defined chunking of a stream with FastCDC (2020, normalization
//! level 1). Cut points depend only on content, never on how the bytes were
//! split into `push` calls.

use fastcdc::v2020::{Normalization, cut, select_masks};

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

/// Accumulates stream bytes and hands out complete chunks.
///
/// Memory: a buffer of twice `max` bytes plus the caller's last push. Each
/// byte is copied into the buffer once and out into its chunk once; a
/// pending tail (less than `max` bytes) moves to the buffer's front only
/// when the consumed part has grown past `max`.
#[derive(Debug)]
pub struct StreamChunker {
    params: CdcParams,
    masks: (u64, u64),
    buf: Vec<u8>,
    /// Start of the pending bytes in `buf`.
    start: usize,
}

impl StreamChunker {
    pub fn new(params: CdcParams) -> Self {
        let masks = select_masks(params.avg, Normalization::Level1);
        Self { params, masks, buf: Vec::with_capacity(2 * params.max), start: 0 }
    }

    /// Bytes waiting for their chunk to be cut.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    fn cut_point(&self, data: &[u8]) -> usize {
        let (ms, ml) = self.masks;
        let p = self.params;
        cut(data, p.min, p.avg, p.max, ms, ml, ms << 1, ml << 1).1
    }

    /// Feed bytes; `emit` receives every chunk completed so far.
    pub fn push(&mut self, mut data: &[u8], emit: &mut dyn FnMut(Vec<u8>)) {
        let max = self.params.max;
        while !data.is_empty() {
            if self.start >= max {
                // Move the pending tail (< max bytes) to the front.
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let take = (self.start + 2 * max - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            while self.buf.len() - self.start >= max {
                let window = &self.buf[self.start..self.start + max];
                let at = self.cut_point(window);
                emit(window[..at].to_vec());
                self.start += at;
            }
        }
    }

    /// Cut everything pending (end of stream, or a forced boundary).
    pub fn finish(&mut self, emit: &mut dyn FnMut(Vec<u8>)) {
        while self.start < self.buf.len() {
            let rest = &self.buf[self.start..];
            let at = self.cut_point(rest).max(1).min(rest.len());
            emit(rest[..at].to_vec());
            self.start += at;
        }
        self.buf.clear();
        self.start = 0;
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
