//! A file's attribute record (stream 1), as Bacula writes and reads it:
//!
//! ```text
//! "<file index> <type> <name>\0<stat>\0<link>\0<extra>\0<delta>\0"
//! ```
//!
//! `stat` is sixteen numbers separated by spaces, each in Bacula's
//! radix-64 digits (`A-Z a-z 0-9 + /` for 0 to 63, most significant
//! first, a leading `-` for a negative number): device, inode, mode, link
//! count, owner, group, device number, size, block size, blocks, access,
//! modification and change time (seconds), the file index of the first
//! name of a hard link, flags, and the stream that holds the data.

use crate::{Result, VolError};

/// The kinds of attribute record Cairn writes (Bacula's `FT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// Another name of a file already sent (a hard link): `link` is that
    /// first name, `Stat::link_fi` its file index; no data follows.
    LinkSaved = 1,
    /// An empty regular file.
    RegularEmpty = 2,
    Regular = 3,
    /// A symlink: `link` is its target.
    Symlink = 4,
    /// A directory, sent after its contents; its name ends in `/`.
    Directory = 5,
    /// A FIFO or a device node (the kind is in the mode).
    Special = 6,
}

impl FileType {
    pub fn from_code(code: u32) -> Option<FileType> {
        Some(match code {
            1 => FileType::LinkSaved,
            2 => FileType::RegularEmpty,
            3 => FileType::Regular,
            4 => FileType::Symlink,
            5 => FileType::Directory,
            6 => FileType::Special,
            _ => return None,
        })
    }
}

/// The `stat` fields of an attribute record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    pub dev: i64,
    pub ino: i64,
    pub mode: i64,
    pub nlink: i64,
    pub uid: i64,
    pub gid: i64,
    pub rdev: i64,
    pub size: i64,
    pub blksize: i64,
    pub blocks: i64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    /// The file index of a hard link's first name (0 for none).
    pub link_fi: i64,
    pub flags: i64,
    /// The stream of the file's data (2, or 6 when sparse).
    pub data_stream: i64,
}

impl Stat {
    fn fields(&self) -> [i64; 16] {
        [
            self.dev,
            self.ino,
            self.mode,
            self.nlink,
            self.uid,
            self.gid,
            self.rdev,
            self.size,
            self.blksize,
            self.blocks,
            self.atime,
            self.mtime,
            self.ctime,
            self.link_fi,
            self.flags,
            self.data_stream,
        ]
    }
}

/// One attribute record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub file_index: i32,
    pub file_type: FileType,
    /// The full name, raw bytes (no NUL); a directory's ends in `/`.
    pub name: Vec<u8>,
    pub stat: Stat,
    /// A symlink's target or a hard link's first name, else empty.
    pub link: Vec<u8>,
}

const DIGITS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A number in Bacula's radix-64 digits.
pub fn radix64(v: i64) -> String {
    let mut out = Vec::new();
    let mut n = v.unsigned_abs();
    loop {
        out.push(DIGITS[(n & 63) as usize]);
        n >>= 6;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// Read a radix-64 number.
pub fn from_radix64(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if digits.is_empty() || digits.len() > 11 {
        return None;
    }
    let mut n: u64 = 0;
    for c in digits.bytes() {
        let d = DIGITS.iter().position(|x| *x == c)? as u64;
        n = n.checked_mul(64)?.checked_add(d)?;
    }
    let n = i64::try_from(n).ok()?;
    Some(if neg { -n } else { n })
}

impl Attributes {
    pub fn encode(&self) -> Result<Vec<u8>> {
        if self.name.contains(&0) || self.link.contains(&0) {
            return Err(VolError::Invalid("a name or link target holds a NUL byte".into()));
        }
        let mut out = format!("{} {} ", self.file_index, self.file_type as u32).into_bytes();
        out.extend_from_slice(&self.name);
        out.push(0);
        let stat: Vec<String> = self.stat.fields().iter().map(|v| radix64(*v)).collect();
        out.extend_from_slice(stat.join(" ").as_bytes());
        out.push(0);
        out.extend_from_slice(&self.link);
        out.push(0);
        out.push(0); // no extra attributes (Windows only)
        out.extend_from_slice(b"0\0");
        Ok(out)
    }

    pub fn decode(b: &[u8]) -> Result<Attributes> {
        let bad = |why: &str| VolError::BadAttributes(why.to_owned());
        let mut parts = b.split(|c| *c == 0);
        let head = parts.next().ok_or_else(|| bad("empty"))?;
        let mut words = head.splitn(3, |c| *c == b' ');
        let num = |w: Option<&[u8]>, what: &str| -> Result<i64> {
            let w = w.ok_or_else(|| bad(&format!("no {what}")))?;
            std::str::from_utf8(w)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad(&format!("bad {what}")))
        };
        let file_index = i32::try_from(num(words.next(), "file index")?).map_err(|_| bad("file index"))?;
        let code = u32::try_from(num(words.next(), "file type")?).map_err(|_| bad("file type"))?;
        let file_type = FileType::from_code(code).ok_or_else(|| bad(&format!("file type {code}")))?;
        let name = words.next().ok_or_else(|| bad("no name"))?.to_vec();
        let stat_text = parts.next().ok_or_else(|| bad("no stat fields"))?;
        let stat_text = std::str::from_utf8(stat_text).map_err(|_| bad("stat fields are not text"))?;
        let mut v = [0i64; 16];
        let fields: Vec<&str> = stat_text.split(' ').collect();
        if fields.len() < 13 || fields.len() > 16 {
            return Err(bad(&format!("{} stat fields", fields.len())));
        }
        for (slot, f) in v.iter_mut().zip(&fields) {
            *slot = from_radix64(f).ok_or_else(|| bad(&format!("stat field {f:?}")))?;
        }
        let link = parts.next().ok_or_else(|| bad("no link field"))?.to_vec();
        let stat = Stat {
            dev: v[0],
            ino: v[1],
            mode: v[2],
            nlink: v[3],
            uid: v[4],
            gid: v[5],
            rdev: v[6],
            size: v[7],
            blksize: v[8],
            blocks: v[9],
            atime: v[10],
            mtime: v[11],
            ctime: v[12],
            link_fi: v[13],
            flags: v[14],
            data_stream: v[15],
        };
        Ok(Attributes { file_index, file_type, name, stat, link })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix64_numbers_are_baculas() {
        assert_eq!(radix64(0), "A");
        assert_eq!(radix64(1_700_000_000), "BlU/EA");
        assert_eq!(radix64(0o100644), "IGk");
        assert_eq!(radix64(1000), "Po");
        assert_eq!(radix64(-5), "-F");
        for v in [0, 1, 63, 64, 1000, -1, i64::MAX, -i64::MAX, 1_700_000_000] {
            assert_eq!(from_radix64(&radix64(v)), Some(v), "{v}");
        }
        assert_eq!(from_radix64(""), None);
        assert_eq!(from_radix64("A*"), None);
        assert_eq!(from_radix64("//////////////"), None);
    }

    #[test]
    fn attributes_round_trip() {
        let a = Attributes {
            file_index: 7,
            file_type: FileType::Symlink,
            name: b"/data/a b/\xff link".to_vec(),
            stat: Stat { mode: 0o120777, mtime: 1_700_000_000, size: 3, data_stream: 2, ..Stat::default() },
            link: b"../target".to_vec(),
        };
        let bytes = a.encode().unwrap();
        assert!(bytes.starts_with(b"7 4 /data/a b/\xff link\0"));
        assert!(bytes.ends_with(b"\0../target\0\x000\0"));
        assert_eq!(Attributes::decode(&bytes).unwrap(), a);
        assert!(Attributes::decode(b"x 3 /a\0A\0\0\0").is_err());
        assert!(Attributes::decode(b"1 99 /a\0A A A A A A A A A A A A A\0\0\0").is_err());
    }
}
