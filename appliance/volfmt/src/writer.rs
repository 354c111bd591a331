//! Writing a volume: the volume label in block 0, then sessions of
//! records, each record split across blocks as needed, each block sealed
//! with its checksum and written whole.

use std::io::Write;

use crate::block::{BLOCK_HEADER, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, seal};
use crate::label::{EOS_LABEL, SOS_LABEL, SessionLabel, VOL_LABEL, VolumeLabel};
use crate::record::{RECORD_HEADER, RecordHeader};
use crate::{Result, VolError};

/// A volume to go on in: its output, its label, and the record (if any)
/// that follows the label in block 0 (see [`VolumeWriter::create_with`]).
pub struct NewVolume<W> {
    pub out: W,
    pub label: VolumeLabel,
    pub record: Option<Vec<u8>>,
}

/// Makes volume number `n` (from 2) when the one being written is full.
pub type NextVolume<W> = Box<dyn FnMut(u32) -> Result<NewVolume<W>>>;

/// Says whether the volume on `W` is full before a block of `len` bytes
/// is written, given the bytes written to it so far.
pub type IsFull<W> = Box<dyn FnMut(&W, u64, usize) -> bool>;

/// A volume being written to `out` (a file or a tape).
pub struct VolumeWriter<W: Write> {
    out: W,
    /// When a volume is full, and how to start the next one.
    limit: Option<(IsFull<W>, NextVolume<W>)>,
    /// How many volumes this writer has written to.
    volumes: u32,
    /// The outputs of full volumes, in order.
    full: Vec<W>,
    block_size: usize,
    block: Vec<u8>,
    number: u32,
    session: (u32, u32),
    /// Bytes written to `out` so far.
    written: u64,
}

impl<W: Write> std::fmt::Debug for VolumeWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeWriter").field("block", &self.number).field("written", &self.written).finish()
    }
}

/// Check a block size: within what Cairn writes.
pub fn check_block_size(size: usize) -> Result<()> {
    if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&size) {
        return Err(VolError::Invalid(format!(
            "block size {size}: must be {} KiB to {} MiB",
            MIN_BLOCK_SIZE >> 10,
            MAX_BLOCK_SIZE >> 20
        )));
    }
    Ok(())
}

impl<W: Write> VolumeWriter<W> {
    /// Start a new volume on `out`: block 0 holds its label.
    pub fn create(out: W, label: &VolumeLabel, block_size: usize) -> Result<Self> {
        Self::create_with(out, label, None, block_size)
    }

    /// Start a new volume on `out` whose block 0 holds its label and then
    /// `record`, in stream [`crate::stream::CAIRN`] with file index 1 and
    /// no session (Cairn's media label on a cartridge: Bacula's tools
    /// read past it).
    pub fn create_with(
        out: W,
        label: &VolumeLabel,
        record: Option<&[u8]>,
        block_size: usize,
    ) -> Result<Self> {
        check_block_size(block_size)?;
        let mut w = VolumeWriter {
            out,
            limit: None,
            volumes: 1,
            full: Vec::new(),
            block_size,
            block: Vec::with_capacity(block_size),
            number: 0,
            session: (0, 0),
            written: 0,
        };
        w.block.resize(BLOCK_HEADER, 0);
        w.label(VOL_LABEL, 0, &label.encode()?)?;
        if let Some(r) = record {
            if w.room() < RECORD_HEADER + r.len() {
                return Err(VolError::Invalid("a media record does not fit in block 0".into()));
            }
            w.label(1, crate::stream::CAIRN, r)?;
        }
        w.flush()?;
        Ok(w)
    }

    /// Go on writing a volume after its last block (number `next_block`
    /// is the first written).
    pub fn append(out: W, next_block: u32, block_size: usize) -> Result<Self> {
        check_block_size(block_size)?;
        let mut block = Vec::with_capacity(block_size);
        block.resize(BLOCK_HEADER, 0);
        Ok(VolumeWriter {
            out,
            limit: None,
            volumes: 1,
            full: Vec::new(),
            block_size,
            block,
            number: next_block,
            session: (0, 0),
            written: 0,
        })
    }

    /// Bytes written to the current output so far (whole blocks).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Let each volume hold at most `max_bytes` (at least four blocks):
    /// when the next block would not fit, the volume ends there and the
    /// session goes on in the volume `next` makes, after its label (a
    /// record cut at the end of one volume continues at the start of the
    /// next, as between blocks).
    pub fn span(&mut self, max_bytes: u64, next: NextVolume<W>) -> Result<()> {
        if max_bytes < 4 * self.block_size as u64 {
            return Err(VolError::Invalid(format!(
                "a volume of at most {max_bytes} bytes cannot hold four blocks of {}",
                self.block_size
            )));
        }
        self.limit = Some((Box::new(move |_, written, len| written + len as u64 > max_bytes), next));
        Ok(())
    }

    /// Let `full` say when a volume is full (a tape drive's early
    /// warning): the session goes on in the volume `next` makes, as with
    /// [`span`](Self::span).
    pub fn span_when(&mut self, full: IsFull<W>, next: NextVolume<W>) {
        self.limit = Some((full, next));
    }

    /// Start the next volume: its label in its block 0.
    fn next_volume(&mut self) -> Result<()> {
        let Some((_, next)) = self.limit.as_mut() else { return Ok(()) };
        self.out.flush()?;
        let NewVolume { out, label, record } = next(self.volumes + 1)?;
        let old = std::mem::replace(&mut self.out, out);
        self.full.push(old);
        self.volumes += 1;
        self.written = 0;
        let data = label.encode()?;
        let mut block = vec![0u8; BLOCK_HEADER];
        let size = u32::try_from(data.len()).expect("a label fits in u32");
        block.extend_from_slice(&RecordHeader { file_index: VOL_LABEL, stream: 0, size }.encode());
        block.extend_from_slice(&data);
        if let Some(r) = record {
            let size = u32::try_from(r.len())
                .ok()
                .filter(|_| block.len() + RECORD_HEADER + r.len() <= self.block_size);
            let size =
                size.ok_or_else(|| VolError::Invalid("a media record does not fit in block 0".into()))?;
            block.extend_from_slice(
                &RecordHeader { file_index: 1, stream: crate::stream::CAIRN, size }.encode(),
            );
            block.extend_from_slice(&r);
        }
        seal(&mut block, 0, 0, 0);
        self.out.write_all(&block)?;
        self.written += block.len() as u64;
        self.number = 1;
        Ok(())
    }

    /// The number the next block written gets.
    pub fn next_block(&self) -> u32 {
        self.number
    }

    fn room(&self) -> usize {
        self.block_size - self.block.len()
    }

    /// Seal and write the block being filled, if it holds any record.
    pub fn flush(&mut self) -> Result<()> {
        if self.block.len() == BLOCK_HEADER {
            return Ok(());
        }
        let len = self.block.len();
        if let Some((full, _)) = self.limit.as_mut()
            && full(&self.out, self.written, len)
        {
            self.next_volume()?;
        }
        seal(&mut self.block, self.number, self.session.0, self.session.1);
        self.out.write_all(&self.block)?;
        self.written += self.block.len() as u64;
        self.number =
            self.number.checked_add(1).ok_or_else(|| VolError::Invalid("too many blocks".into()))?;
        self.block.truncate(BLOCK_HEADER);
        self.block[..BLOCK_HEADER].fill(0);
        Ok(())
    }

    /// A label record, whole in one block.
    fn label(&mut self, file_index: i32, stream: i32, data: &[u8]) -> Result<()> {
        if self.room() < RECORD_HEADER + data.len() {
            self.flush()?;
        }
        if self.room() < RECORD_HEADER + data.len() {
            return Err(VolError::Invalid(format!(
                "a label of {} bytes does not fit in a block",
                data.len()
            )));
        }
        let size = u32::try_from(data.len()).expect("a label fits in u32");
        self.block.extend_from_slice(&RecordHeader { file_index, stream, size }.encode());
        self.block.extend_from_slice(data);
        Ok(())
    }

    /// Start session `id` (its records carry `id` and `time` in their
    /// blocks' headers) with its start label.
    pub fn begin_session(&mut self, id: u32, time: u32, label: &SessionLabel) -> Result<()> {
        self.flush()?;
        self.session = (id, time);
        let stream = i32::try_from(label.job_id).map_err(|_| VolError::Invalid("job id too large".into()))?;
        self.label(SOS_LABEL, stream, &label.encode()?)
    }

    /// End the session with its end label (which says how many files and
    /// bytes it holds) and write out its last block.
    pub fn end_session(&mut self, label: &SessionLabel) -> Result<()> {
        if label.end.is_none() {
            return Err(VolError::Invalid("a session end label needs its counts".into()));
        }
        let stream = i32::try_from(label.job_id).map_err(|_| VolError::Invalid("job id too large".into()))?;
        self.label(EOS_LABEL, stream, &label.encode()?)?;
        self.flush()
    }

    /// One record of the session: `data` goes in as many blocks as it
    /// takes.
    pub fn record(&mut self, file_index: i32, stream: i32, data: &[u8]) -> Result<()> {
        if file_index <= 0 || stream <= 0 {
            return Err(VolError::Invalid(format!("record ({file_index}, {stream}): both must be positive")));
        }
        let mut rest = data;
        let mut first = true;
        loop {
            if self.room() < RECORD_HEADER {
                self.flush()?;
            }
            let n = rest.len().min(self.room() - RECORD_HEADER);
            let size = u32::try_from(rest.len()).map_err(|_| VolError::Invalid("record too large".into()))?;
            let stream = if first { stream } else { -stream };
            self.block.extend_from_slice(&RecordHeader { file_index, stream, size }.encode());
            self.block.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            first = false;
            if rest.is_empty() {
                return Ok(());
            }
            self.flush()?;
        }
    }

    /// Write out the last block and give the output back.
    pub fn finish(self) -> Result<W> {
        Ok(self.finish_all()?.pop().expect("one output at least"))
    }

    /// Write out the last block and give every output back, in order (more
    /// than one when the session spanned volumes).
    pub fn finish_all(mut self) -> Result<Vec<W>> {
        self.flush()?;
        self.out.flush()?;
        self.full.push(self.out);
        Ok(self.full)
    }
}
