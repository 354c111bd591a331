//! READ ATTRIBUTE data (SPC-4 6.16, service action ATTRIBUTE VALUES): the
//! attributes of the cartridge's memory chip (MAM). The response is a
//! 4-byte AVAILABLE DATA length, then attributes: a 2-byte identifier, a
//! byte with READ ONLY (bit 7) and FORMAT (bits 1-0), a 2-byte length, and
//! the value.

use super::bytes::{Bytes, ascii_field};
use crate::Result;

/// MAM attribute MEDIUM TYPE (1 byte, binary).
pub const MAM_MEDIUM_TYPE: u16 = 0x0408;
/// MAM attribute BARCODE (32 bytes, ASCII), as written by a library.
pub const MAM_BARCODE: u16 = 0x0806;

/// One attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub id: u16,
    pub read_only: bool,
    /// 00b binary, 01b ASCII, 10b text.
    pub format: u8,
    pub value: Vec<u8>,
}

impl Attribute {
    /// The value as text, for an ASCII or text attribute (padding trimmed).
    pub fn text(&self) -> Option<String> {
        matches!(self.format, 0b01 | 0b10).then(|| ascii_field(&self.value)).flatten()
    }
}

/// What the MEDIUM TYPE attribute says the cartridge is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediumKind {
    Data,
    Cleaning,
    /// Write-once (WORM).
    Worm,
    Other(u8),
}

/// Parse READ ATTRIBUTE data. A device returns attributes up to the
/// allocation length: an attribute cut by it ends the list (the
/// complete ones before it are returned); one cut short inside data the
/// device says is complete is an error.
pub fn parse_attributes(data: &[u8]) -> Result<Vec<Attribute>> {
    let b = Bytes::new(data, "READ ATTRIBUTE data");
    let available = 4 + b.u32(0)? as usize;
    let cut_by_allocation = available > b.len();
    let end = available.min(b.len());
    let mut attributes = Vec::new();
    let mut at = 4;
    while at < end {
        let header = match b.sub(at, 5) {
            Ok(h) if at + 5 <= end => h,
            _ if cut_by_allocation => break,
            _ => return Err(b.error(format_args!("attribute header at offset {at} overruns the data"))),
        };
        let id = header.u16(0)?;
        let len = usize::from(header.u16(3)?);
        if at + 5 + len > end {
            if cut_by_allocation {
                break;
            }
            return Err(b.error(format_args!("attribute {id:#06x} at offset {at} overruns the data")));
        }
        let flags = header.u8(2)?;
        attributes.push(Attribute {
            id,
            read_only: flags & 0x80 != 0,
            format: flags & 0x03,
            value: b.slice(at + 5, len)?.to_vec(),
        });
        at += 5 + len;
    }
    Ok(attributes)
}

/// The cartridge's kind from its MEDIUM TYPE attribute (00h data, 01h
/// cleaning, 80h write-once), when `attributes` has it.
pub fn medium_kind(attributes: &[Attribute]) -> Option<MediumKind> {
    let value = attributes.iter().find(|a| a.id == MAM_MEDIUM_TYPE)?.value.first()?;
    Some(match value {
        0x00 => MediumKind::Data,
        0x01 => MediumKind::Cleaning,
        0x80 => MediumKind::Worm,
        &other => MediumKind::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attribute_cut_by_the_allocation_length_ends_the_list() {
        // Two attributes available (6 + 9 bytes); the second is cut.
        let data = [0, 0, 0, 15, 0x04, 0x08, 0x80, 0, 1, 0x00, 0x04, 0x00, 0x00, 0, 4, 0xaa];
        let attrs = parse_attributes(&data).unwrap();
        assert_eq!(attrs.len(), 1);
        assert_eq!(medium_kind(&attrs), Some(MediumKind::Data));
    }

    #[test]
    fn truncated_and_garbage_attributes_are_errors() {
        assert!(parse_attributes(&[0, 0, 0]).is_err());
        // Complete data (available 6) whose attribute claims 9 value bytes.
        let err = parse_attributes(&[0, 0, 0, 6, 0x04, 0x08, 0x80, 0, 9, 0x80]).unwrap_err().to_string();
        assert!(err.contains("overruns"), "{err}");
        // Complete data ending inside an attribute header.
        assert!(parse_attributes(&[0, 0, 0, 3, 0x04, 0x08, 0x80]).is_err());
        assert_eq!(parse_attributes(&[0, 0, 0, 0]).unwrap(), []);
        for junk in [[0xffu8; 40], [0x00; 40], [0x08; 40]] {
            let _ = parse_attributes(&junk);
        }
    }

    #[test]
    fn medium_kinds() {
        let attr = |v| vec![Attribute { id: MAM_MEDIUM_TYPE, read_only: true, format: 0, value: vec![v] }];
        assert_eq!(medium_kind(&attr(0x01)), Some(MediumKind::Cleaning));
        assert_eq!(medium_kind(&attr(0x80)), Some(MediumKind::Worm));
        assert_eq!(medium_kind(&attr(0x42)), Some(MediumKind::Other(0x42)));
        assert_eq!(medium_kind(&[]), None);
        let barcode = Attribute { id: MAM_BARCODE, read_only: false, format: 1, value: b"X1  ".to_vec() };
        assert_eq!(barcode.text().as_deref(), Some("X1"));
        assert_eq!(Attribute { format: 0, ..barcode }.text(), None);
    }
}
