//! Labels: records with a negative file index. The volume label is the
//! only record of block 0; each session (one snapshot) starts with a
//! session start label and ends with a session end label, each whole in
//! one block. Their fields are Bacula's, serialized big-endian with
//! strings NUL-terminated, so Bacula's tools accept the volume.

use crate::{Result, VolError};

/// A label's first field: Bacula's tools refuse a volume with any other.
pub const LABEL_ID: &str = "Bacula 1.0 immortal\n";
/// The label version Cairn writes (Bacula 9's).
pub const LABEL_VERSION: u32 = 11;

/// File indexes of label records.
pub const PRE_LABEL: i32 = -1;
pub const VOL_LABEL: i32 = -2;
pub const EOM_LABEL: i32 = -3;
pub const SOS_LABEL: i32 = -4;
pub const EOS_LABEL: i32 = -5;

/// Longest string a label field may hold (Bacula's name limit).
pub const MAX_LABEL_STRING: usize = 127;

/// The volume label: what the volume is, written once when it is made.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeLabel {
    /// Microseconds since the Unix epoch.
    pub label_time_us: i64,
    pub write_time_us: i64,
    /// The volume's name; a volume file is named so.
    pub volume_name: String,
    /// The volume this one continues, "" for none.
    pub prev_volume_name: String,
    pub pool_name: String,
    pub pool_type: String,
    pub media_type: String,
    pub host_name: String,
    pub label_prog: String,
    pub prog_version: String,
    pub prog_date: String,
}

/// What a session end label adds to a start label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionEnd {
    /// Files (attribute records) in the session.
    pub job_files: u32,
    /// Bytes of file data in the session.
    pub job_bytes: u64,
    pub start_block: u32,
    pub end_block: u32,
    pub start_file: u32,
    pub end_file: u32,
    pub job_errors: u32,
    /// `T`: terminated normally.
    pub job_status: u8,
}

/// A session start (or, with `end`, end) label.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionLabel {
    pub job_id: u32,
    /// Microseconds since the Unix epoch.
    pub write_time_us: i64,
    pub pool_name: String,
    pub pool_type: String,
    pub job_name: String,
    pub client_name: String,
    /// The session's unique job name (`NAME.YYYY-MM-DD_HH.MM.SS_NN`).
    pub job: String,
    pub fileset_name: String,
    /// `B`: backup.
    pub job_type: u8,
    /// `F`: full.
    pub job_level: u8,
    pub fileset_md5: String,
    pub end: Option<SessionEnd>,
}

#[derive(Default)]
struct Ser(Vec<u8>);

impl Ser {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_bits().to_be_bytes());
    }
    fn str(&mut self, what: &str, s: &str) -> Result<()> {
        if s.len() > MAX_LABEL_STRING || s.contains('\0') {
            return Err(VolError::Invalid(format!(
                "label field {what} {s:?}: at most {MAX_LABEL_STRING} bytes and no NUL"
            )));
        }
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        Ok(())
    }
}

struct De<'a> {
    b: &'a [u8],
    pos: usize,
}

impl De<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.b.len());
        let end = end.ok_or_else(|| VolError::BadLabel(format!("it ends before {what}")))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    fn i64(&mut self, what: &str) -> Result<i64> {
        Ok(self.u64(what)? as i64)
    }
    fn str(&mut self, what: &str) -> Result<String> {
        let rest = &self.b[self.pos..];
        let n = rest
            .iter()
            .position(|c| *c == 0)
            .ok_or_else(|| VolError::BadLabel(format!("{what} has no end")))?;
        if n > 1024 {
            return Err(VolError::BadLabel(format!("{what} is {n} bytes long")));
        }
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn head(&mut self) -> Result<()> {
        let id = self.str("the label id")?;
        if id != LABEL_ID {
            return Err(VolError::BadLabel(format!("label id {id:?} is not Bacula's {LABEL_ID:?}")));
        }
        let version = self.u32("the label version")?;
        if !(9..=11).contains(&version) {
            return Err(VolError::BadLabel(format!("label version {version} (this reads 9 to 11)")));
        }
        Ok(())
    }
}

impl VolumeLabel {
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut s = Ser::default();
        s.str("id", LABEL_ID)?;
        s.u32(LABEL_VERSION);
        s.i64(self.label_time_us);
        s.i64(self.write_time_us);
        s.f64(0.0);
        s.f64(0.0);
        s.str("volume name", &self.volume_name)?;
        s.str("previous volume name", &self.prev_volume_name)?;
        s.str("pool name", &self.pool_name)?;
        s.str("pool type", &self.pool_type)?;
        s.str("media type", &self.media_type)?;
        s.str("host name", &self.host_name)?;
        s.str("label program", &self.label_prog)?;
        s.str("program version", &self.prog_version)?;
        s.str("program date", &self.prog_date)?;
        // Bacula 9's tail (aligned volumes, unused here): an empty name,
        // then zeros. Its reader skips the name, so the zeros keep the
        // fields it does read at zero.
        s.str("aligned volume name", "")?;
        s.u64(0);
        s.u32(0);
        s.u32(0);
        s.u32(0);
        Ok(s.0)
    }

    pub fn decode(b: &[u8]) -> Result<VolumeLabel> {
        let mut d = De { b, pos: 0 };
        d.head()?;
        let label_time_us = d.i64("the label time")?;
        let write_time_us = d.i64("the write time")?;
        d.take(16, "the old write date")?;
        Ok(VolumeLabel {
            label_time_us,
            write_time_us,
            volume_name: d.str("the volume name")?,
            prev_volume_name: d.str("the previous volume name")?,
            pool_name: d.str("the pool name")?,
            pool_type: d.str("the pool type")?,
            media_type: d.str("the media type")?,
            host_name: d.str("the host name")?,
            label_prog: d.str("the label program")?,
            prog_version: d.str("the program version")?,
            prog_date: d.str("the program date")?,
        })
    }
}

impl SessionLabel {
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut s = Ser::default();
        s.str("id", LABEL_ID)?;
        s.u32(LABEL_VERSION);
        s.u32(self.job_id);
        s.i64(self.write_time_us);
        s.f64(0.0);
        s.str("pool name", &self.pool_name)?;
        s.str("pool type", &self.pool_type)?;
        s.str("job name", &self.job_name)?;
        s.str("client name", &self.client_name)?;
        s.str("job", &self.job)?;
        s.str("file set name", &self.fileset_name)?;
        s.u32(u32::from(self.job_type));
        s.u32(u32::from(self.job_level));
        s.str("file set digest", &self.fileset_md5)?;
        if let Some(e) = &self.end {
            s.u32(e.job_files);
            s.u64(e.job_bytes);
            s.u32(e.start_block);
            s.u32(e.end_block);
            s.u32(e.start_file);
            s.u32(e.end_file);
            s.u32(e.job_errors);
            s.u32(u32::from(e.job_status));
        }
        Ok(s.0)
    }

    /// Decode a start label, or an end label when `end`.
    pub fn decode(b: &[u8], end: bool) -> Result<SessionLabel> {
        let mut d = De { b, pos: 0 };
        d.head()?;
        let job_id = d.u32("the job id")?;
        let write_time_us = d.i64("the write time")?;
        d.take(8, "the old write time")?;
        let mut l = SessionLabel {
            job_id,
            write_time_us,
            pool_name: d.str("the pool name")?,
            pool_type: d.str("the pool type")?,
            job_name: d.str("the job name")?,
            client_name: d.str("the client name")?,
            job: d.str("the job")?,
            fileset_name: d.str("the file set name")?,
            job_type: d.u32("the job type")? as u8,
            job_level: d.u32("the job level")? as u8,
            fileset_md5: d.str("the file set digest")?,
            end: None,
        };
        if end {
            l.end = Some(SessionEnd {
                job_files: d.u32("the file count")?,
                job_bytes: d.u64("the byte count")?,
                start_block: d.u32("the start block")?,
                end_block: d.u32("the end block")?,
                start_file: d.u32("the start file")?,
                end_file: d.u32("the end file")?,
                job_errors: d.u32("the error count")?,
                job_status: d.u32("the status")? as u8,
            });
        }
        Ok(l)
    }
}
