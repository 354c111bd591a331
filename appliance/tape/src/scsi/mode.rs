//! MODE SENSE responses (SPC-4 7.5): the mode parameter header (6- or
//! 10-byte form), block descriptors, then mode pages; and the tape
//! drive's Medium Configuration page.
//!
//! Write protection is the WP bit (7) of the header's DEVICE-SPECIFIC
//! PARAMETER, as SSC-4 defines it for sequential-access devices.
//!
//! WORM: SSC-3 and SSC-4 report it in the Medium Configuration mode page
//! (1Dh), bit 0 of byte 2 (WORMM: "the drive is operating in WORM mode",
//! i.e. the loaded cartridge is write-once); LTO drives from LTO-3 on
//! (IBM and HP) implement that page. The header's MEDIUM TYPE byte is not
//! used for it: its values for LTO cartridges are assigned per vendor (IBM
//! and HP document different codes), so it is only reported raw. Drives
//! without the page can still be asked for the cartridge memory's MEDIUM
//! TYPE attribute (0408h, see [`super::medium_kind`]).

use super::bytes::Bytes;
use crate::Result;

/// Which MODE SENSE a response answers: 6 (4-byte header) or 10 (8-byte
/// header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeForm {
    Six,
    Ten,
}

/// The mode parameter header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeHeader {
    /// How many bytes the device has, header included.
    pub total_len: usize,
    pub medium_type: u8,
    pub device_specific: u8,
    pub block_descriptor_len: usize,
    /// Where the first mode page starts.
    pub pages_offset: usize,
}

impl ModeHeader {
    /// The WP bit of a sequential-access device's DEVICE-SPECIFIC
    /// PARAMETER.
    pub fn write_protected(&self) -> bool {
        self.device_specific & 0x80 != 0
    }
}

/// Parse the mode parameter header of a MODE SENSE response.
pub fn parse_mode_header(data: &[u8], form: ModeForm) -> Result<ModeHeader> {
    let b = Bytes::new(data, "mode parameter header");
    let (total_len, medium_type, device_specific, block_descriptor_len, header_len) = match form {
        // The MODE DATA LENGTH field does not count itself.
        ModeForm::Six => (usize::from(b.u8(0)?) + 1, b.u8(1)?, b.u8(2)?, usize::from(b.u8(3)?), 4),
        ModeForm::Ten => (usize::from(b.u16(0)?) + 2, b.u8(2)?, b.u8(3)?, usize::from(b.u16(6)?), 8),
    };
    Ok(ModeHeader {
        total_len,
        medium_type,
        device_specific,
        block_descriptor_len,
        pages_offset: header_len + block_descriptor_len,
    })
}

/// The mode page `page` (its 2- or 4-byte page header included) of a MODE
/// SENSE response in `form`. An error when the page is not there or is
/// cut short.
pub fn mode_page(data: &[u8], form: ModeForm, page: u8) -> Result<&[u8]> {
    let header = parse_mode_header(data, form)?;
    let b = Bytes::new(data, "mode sense data");
    // What the device has, bounded by what arrived.
    let end = header.total_len.min(b.len());
    let mut at = header.pages_offset;
    while at < end {
        let code = b.u8(at)?;
        // SPF (bit 6): the sub-page format, with a 2-byte page length.
        let len =
            if code & 0x40 != 0 { 4 + usize::from(b.u16(at + 2)?) } else { 2 + usize::from(b.u8(at + 1)?) };
        if code & 0x3f == page {
            if at + len > end {
                return Err(b.error(format_args!(
                    "page {page:#04x} at offset {at} is {len} bytes, {} arrived",
                    end - at
                )));
            }
            return b.slice(at, len);
        }
        at += len;
    }
    Err(b.error(format_args!("no page {page:#04x} in {end} bytes")))
}

/// What a tape drive's Medium Configuration page and its header say of
/// the loaded cartridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediumConfiguration {
    pub write_protected: bool,
    /// The header's MEDIUM TYPE, raw (vendor-assigned for LTO).
    pub medium_type: u8,
    /// The WORMM bit: the cartridge is write-once.
    pub worm: bool,
}

/// Parse a tape drive's MODE SENSE response for the Medium Configuration
/// page (1Dh), in `form`.
pub fn parse_medium_configuration(data: &[u8], form: ModeForm) -> Result<MediumConfiguration> {
    let header = parse_mode_header(data, form)?;
    let page = Bytes::new(mode_page(data, form, 0x1d)?, "medium configuration page");
    Ok(MediumConfiguration {
        write_protected: header.write_protected(),
        medium_type: header.medium_type,
        worm: page.bit(2, 0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_both_forms() {
        let six = parse_mode_header(&[0x0b, 0x00, 0x90, 0x08], ModeForm::Six).unwrap();
        assert_eq!((six.total_len, six.pages_offset), (12, 12));
        assert!(six.write_protected());
        let ten = parse_mode_header(&[0, 0x26, 0x3c, 0x10, 0, 0, 0, 0], ModeForm::Ten).unwrap();
        assert_eq!((ten.total_len, ten.medium_type, ten.pages_offset), (0x28, 0x3c, 8));
        assert!(!ten.write_protected());
    }

    #[test]
    fn pages_are_found_past_block_descriptors_and_other_pages() {
        // Header (6), one 8-byte block descriptor, page 0Fh, then 1Dh.
        let mut data = vec![0, 0, 0x10, 8, 0x58, 0, 0, 0, 0, 0, 0, 0];
        data.extend_from_slice(&[0x0f, 2, 0xc0, 0x80]);
        data.extend_from_slice(&[0x1d, 4, 1, 0, 0, 0]);
        data[0] = (data.len() - 1) as u8;
        assert_eq!(mode_page(&data, ModeForm::Six, 0x1d).unwrap(), [0x1d, 4, 1, 0, 0, 0]);
        assert!(parse_medium_configuration(&data, ModeForm::Six).unwrap().worm);
        let err = mode_page(&data, ModeForm::Six, 0x0a).unwrap_err().to_string();
        assert!(err.contains("no page 0x0a"), "{err}");
    }

    #[test]
    fn truncated_and_garbage_mode_data_is_an_error() {
        assert!(parse_mode_header(&[3, 0, 0], ModeForm::Six).is_err());
        assert!(parse_mode_header(&[0, 6, 0, 0, 0, 0, 0], ModeForm::Ten).is_err());
        // The page claims 32 bytes; 4 arrived.
        let data = [0x23, 0, 0, 0, 0x1d, 0x1e, 0, 1];
        let err = parse_medium_configuration(&data, ModeForm::Six).unwrap_err().to_string();
        assert!(err.contains("is 32 bytes, 4 arrived"), "{err}");
        // A page too short to hold WORMM.
        let data = [5, 0, 0, 0, 0x1d, 0];
        assert!(parse_medium_configuration(&data, ModeForm::Six).is_err());
        // A block descriptor length pointing past the data.
        let data = [5, 0, 0, 0xff, 0x1d, 0];
        assert!(mode_page(&data, ModeForm::Six, 0x1d).is_err());
        for junk in [[0xffu8; 12], [0; 12], [0x1d; 12]] {
            let _ = parse_medium_configuration(&junk, ModeForm::Six);
            let _ = parse_medium_configuration(&junk, ModeForm::Ten);
        }
    }
}
