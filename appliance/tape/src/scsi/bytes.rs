//! Bounds-checked reads of SCSI responses: every parser reads through
//! `Bytes`, so a short or garbled response is an error naming it, never a
//! panic.

use crate::{Result, TapeError};

/// Bounds-checked big-endian reads from a response, with the response's
/// name in every error.
#[derive(Clone, Copy)]
pub(crate) struct Bytes<'a> {
    data: &'a [u8],
    what: &'static str,
}

impl<'a> Bytes<'a> {
    pub(crate) fn new(data: &'a [u8], what: &'static str) -> Self {
        Bytes { data, what }
    }

    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    /// An error about this response.
    pub(crate) fn error(&self, msg: impl std::fmt::Display) -> TapeError {
        TapeError::Scsi(format!("{}: {msg}", self.what))
    }

    /// `len` bytes from `at`, or an error saying the response is short.
    pub(crate) fn slice(&self, at: usize, len: usize) -> Result<&'a [u8]> {
        at.checked_add(len).and_then(|end| self.data.get(at..end)).ok_or_else(|| {
            self.error(format_args!("{} bytes, too short for {len} bytes at offset {at}", self.data.len()))
        })
    }

    /// The part from `at` on, `len` bytes long, as a response of its own.
    pub(crate) fn sub(&self, at: usize, len: usize) -> Result<Bytes<'a>> {
        Ok(Bytes { data: self.slice(at, len)?, what: self.what })
    }

    pub(crate) fn u8(&self, at: usize) -> Result<u8> {
        Ok(self.slice(at, 1)?[0])
    }

    /// Bit `bit` (0 = least significant) of the byte at `at`.
    pub(crate) fn bit(&self, at: usize, bit: u8) -> Result<bool> {
        Ok(self.u8(at)? & (1 << bit) != 0)
    }

    pub(crate) fn be(&self, at: usize, len: usize) -> Result<u64> {
        debug_assert!(len <= 8);
        Ok(self.slice(at, len)?.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    pub(crate) fn u16(&self, at: usize) -> Result<u16> {
        Ok(self.be(at, 2)? as u16)
    }

    pub(crate) fn u24(&self, at: usize) -> Result<u32> {
        Ok(self.be(at, 3)? as u32)
    }

    pub(crate) fn u32(&self, at: usize) -> Result<u32> {
        Ok(self.be(at, 4)? as u32)
    }

    pub(crate) fn u64(&self, at: usize) -> Result<u64> {
        self.be(at, 8)
    }
}

/// ASCII text from a fixed-width field, without the spaces and NULs
/// that pad it; `None` when nothing is left. Bytes that are not
/// printable ASCII become `?`, so a garbled field cannot smuggle control
/// characters into logs.
pub(crate) fn ascii_field(field: &[u8]) -> Option<String> {
    let end = field.iter().rposition(|&b| b != 0 && b != b' ').map_or(0, |i| i + 1);
    let start = field.iter().take(end).position(|&b| b != b' ').unwrap_or(end);
    let text: String = field
        .iter()
        .take(end)
        .skip(start)
        .map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '?' })
        .collect();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_reads_are_bounds_checked() {
        let b = Bytes::new(&[1, 2, 3], "test data");
        assert_eq!(b.u16(1).unwrap(), 0x0203);
        assert_eq!(b.u24(0).unwrap(), 0x010203);
        assert!(b.u32(0).is_err());
        assert!(b.u8(3).is_err());
        assert!(b.slice(usize::MAX, 2).is_err());
        let err = b.u64(0).unwrap_err().to_string();
        assert!(err.contains("test data") && err.contains("too short"), "{err}");
    }

    #[test]
    fn ascii_fields_are_trimmed_and_sanitised() {
        assert_eq!(ascii_field(b"A00001L9                        ").as_deref(), Some("A00001L9"));
        assert_eq!(ascii_field(b"CLN001L1\0\0\0\0").as_deref(), Some("CLN001L1"));
        assert_eq!(ascii_field(b"  XYZ  ").as_deref(), Some("XYZ"));
        assert_eq!(ascii_field(b"A\x07B ").as_deref(), Some("A?B"));
        assert_eq!(ascii_field(&[0; 32]), None);
        assert_eq!(ascii_field(&[b' '; 32]), None);
        assert_eq!(ascii_field(&[]), None);
    }
}
