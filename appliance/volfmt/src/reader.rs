//! Reading a volume: blocks checked (id, length, checksum), records
//! joined across blocks, labels decoded. A damaged block is an error for
//! that block; the reader goes on with the next one, so a caller can
//! report the damage and still read what follows.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{ErrorKind, Read};

use crate::block::{BLOCK_HEADER, BlockHeader, checksum};
use crate::label::{EOS_LABEL, PRE_LABEL, SOS_LABEL, SessionLabel, VOL_LABEL, VolumeLabel};
use crate::record::{RECORD_HEADER, Record, RecordHeader};
use crate::{Result, VolError};

/// What a volume holds, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Volume(VolumeLabel),
    SessionStart {
        session_id: u32,
        session_time: u32,
        label: SessionLabel,
    },
    SessionEnd {
        session_id: u32,
        session_time: u32,
        label: SessionLabel,
    },
    /// A record of a session (a file's attributes, data, or Cairn's own).
    Record {
        session_id: u32,
        /// The session's VolSessionTime: with the id, what names it.
        session_time: u32,
        block: u64,
        record: Record,
    },
    /// A label this reader does not interpret (end of medium, …).
    OtherLabel {
        file_index: i32,
        data: Vec<u8>,
    },
}

/// A record whose first pieces were read.
struct Pending {
    session: (u32, u32),
    file_index: i32,
    stream: i32,
    first_block: u64,
    data: Vec<u8>,
    missing: usize,
}

/// Reads the events of one volume from `input`.
pub struct VolumeReader<R: Read> {
    input: R,
    block: Vec<u8>,
    blocks_read: u64,
    events: VecDeque<Event>,
    /// Records in progress, by session: blocks of several sessions may
    /// come interleaved (jobs appending to one volume at once), each
    /// block holding records of one session.
    pending: BTreeMap<(u32, u32), Pending>,
    /// Sessions whose record in progress a damaged block dropped: the
    /// pieces of that record in the blocks after it are skipped.
    lost: BTreeSet<(u32, u32)>,
    done: bool,
}

impl<R: Read> std::fmt::Debug for VolumeReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeReader").field("blocks_read", &self.blocks_read).finish()
    }
}

/// Read as much of `buf` as the input has; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<R: Read> VolumeReader<R> {
    pub fn new(input: R) -> Self {
        VolumeReader {
            input,
            block: Vec::new(),
            blocks_read: 0,
            events: VecDeque::new(),
            pending: BTreeMap::new(),
            lost: BTreeSet::new(),
            done: false,
        }
    }

    /// The input being read.
    pub fn get_ref(&self) -> &R {
        &self.input
    }

    /// The input, given back.
    pub fn into_inner(self) -> R {
        self.input
    }

    /// Blocks read so far (the next block's position in the volume).
    pub fn blocks_read(&self) -> u64 {
        self.blocks_read
    }

    /// Go on with the next volume of a set: a record the last one cut off
    /// continues at its start.
    pub fn next_volume(&mut self, input: R) {
        self.input = input;
        self.blocks_read = 0;
        self.done = false;
    }

    /// Bytes of a record the volumes read so far ended in the middle of
    /// (a session that goes on in a volume not read), or `None`.
    pub fn unfinished(&self) -> Option<usize> {
        self.pending.values().map(|p| p.missing).next()
    }

    /// The next event; `None` at the end of the volume. An error names
    /// the damaged block; calling again goes on after it (when its length
    /// could be read) or ends the volume.
    pub fn next_event(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            if self.done {
                return Ok(None);
            }
            self.read_block()?;
        }
    }

    fn read_block(&mut self) -> Result<()> {
        let at = self.blocks_read;
        let mut head = [0u8; BLOCK_HEADER];
        let got = read_full(&mut self.input, &mut head)?;
        if got == 0 {
            // A record cut here may go on in the next volume (see
            // `next_volume`); `unfinished` says whether one is.
            self.done = true;
            return Ok(());
        }
        if got < BLOCK_HEADER {
            self.done = true;
            return Err(VolError::BadBlock {
                block: at,
                reason: format!("the volume ends inside a block header ({got} bytes)"),
            });
        }
        let h = match BlockHeader::parse(&head, at) {
            Ok(h) => h,
            Err(e) => {
                self.done = true; // no length to skip by: nothing after it can be found
                return Err(e);
            }
        };
        self.blocks_read += 1;
        self.block.clear();
        self.block.extend_from_slice(&head);
        self.block.resize(h.len as usize, 0);
        let got = read_full(&mut self.input, &mut self.block[BLOCK_HEADER..])?;
        if got < h.len as usize - BLOCK_HEADER {
            self.done = true;
            self.pending.clear();
            return Err(VolError::BadBlock {
                block: at,
                reason: format!("the volume ends {} bytes into a block of {}", got + BLOCK_HEADER, h.len),
            });
        }
        let computed = checksum(&self.block);
        if computed != h.checksum {
            // The record of the block's session in progress (or begun in
            // this block) is broken: its further pieces are skipped; other
            // sessions' records go on.
            let session = (h.session_id, h.session_time);
            self.pending.remove(&session);
            self.lost.insert(session);
            return Err(VolError::Checksum { block: at, stored: h.checksum, computed });
        }
        self.records(&h, at)
    }

    fn records(&mut self, h: &BlockHeader, at: u64) -> Result<()> {
        let session = (h.session_id, h.session_time);
        let mut pos = BLOCK_HEADER;
        let block = std::mem::take(&mut self.block);
        let result = (|| {
            while block.len() - pos >= RECORD_HEADER {
                let r = RecordHeader::parse(&block[pos..pos + RECORD_HEADER]);
                pos += RECORD_HEADER;
                let here = (block.len() - pos).min(r.size as usize);
                let bytes = &block[pos..pos + here];
                pos += here;
                if r.stream < 0 && r.file_index > 0 {
                    let Some(p) = self.pending.get_mut(&session) else {
                        if self.lost.contains(&session) {
                            continue; // the rest of a record a damaged block broke
                        }
                        return Err(VolError::BadRecord {
                            block: at,
                            reason: "a continuation with no record to continue".into(),
                        });
                    };
                    if p.file_index != r.file_index || p.stream != -r.stream || p.missing != r.size as usize {
                        self.pending.remove(&session);
                        return Err(VolError::BadRecord {
                            block: at,
                            reason: "a continuation of another record".into(),
                        });
                    }
                    p.data.extend_from_slice(bytes);
                    p.missing -= here;
                } else if r.file_index < 0 && here == r.size as usize {
                    // A label is whole in its block and belongs to no
                    // record in progress (a new volume's label may come
                    // between the pieces of a record that spans volumes).
                    let label = Pending {
                        session,
                        file_index: r.file_index,
                        stream: r.stream,
                        first_block: at,
                        data: bytes.to_vec(),
                        missing: 0,
                    };
                    self.events.push_back(event(label, at)?);
                    continue;
                } else if session == (0, 0) && r.file_index > 0 && r.stream > 0 && here == r.size as usize {
                    // A record outside any session (a cartridge's media
                    // label in block 0), whole in its block: like a label,
                    // it belongs to no record in progress.
                    let record = Record { file_index: r.file_index, stream: r.stream, data: bytes.to_vec() };
                    self.events.push_back(Event::Record {
                        session_id: 0,
                        session_time: 0,
                        block: at,
                        record,
                    });
                    continue;
                } else {
                    self.lost.remove(&session);
                    if self.pending.remove(&session).is_some() {
                        return Err(VolError::BadRecord {
                            block: at,
                            reason: "a record starts before the last one ended".into(),
                        });
                    }
                    self.pending.insert(
                        session,
                        Pending {
                            session,
                            file_index: r.file_index,
                            stream: r.stream,
                            first_block: at,
                            data: bytes.to_vec(),
                            missing: r.size as usize - here,
                        },
                    );
                }
                if self.pending.get(&session).is_some_and(|p| p.missing == 0) {
                    let p = self.pending.remove(&session).expect("pending");
                    let event = event(p, at)?;
                    self.events.push_back(event);
                }
            }
            Ok(())
        })();
        self.block = block;
        result
    }
}

fn event(p: Pending, at: u64) -> Result<Event> {
    let (session_id, session_time) = p.session;
    Ok(match p.file_index {
        VOL_LABEL | PRE_LABEL => Event::Volume(VolumeLabel::decode(&p.data)?),
        SOS_LABEL => {
            Event::SessionStart { session_id, session_time, label: SessionLabel::decode(&p.data, false)? }
        }
        EOS_LABEL => {
            Event::SessionEnd { session_id, session_time, label: SessionLabel::decode(&p.data, true)? }
        }
        fi if fi < 0 => Event::OtherLabel { file_index: fi, data: p.data },
        0 => return Err(VolError::BadRecord { block: at, reason: "a record with file index 0".into() }),
        fi => Event::Record {
            session_id,
            session_time,
            block: p.first_block,
            record: Record { file_index: fi, stream: p.stream, data: p.data },
        },
    })
}
