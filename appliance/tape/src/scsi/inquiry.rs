//! INQUIRY data (SPC-4 6.6): the standard data (device type, vendor,
//! product, revision) and the unit serial number VPD page (80h).

use super::bytes::{Bytes, ascii_field};
use crate::Result;

/// Standard INQUIRY data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inquiry {
    /// The peripheral device type: 01h a tape drive, 08h a medium changer.
    pub device_type: u8,
    pub removable: bool,
    pub vendor: String,
    pub product: String,
    pub revision: String,
}

/// Peripheral device type of a tape drive (sequential-access device).
pub const DEVICE_TYPE_TAPE: u8 = 0x01;
/// Peripheral device type of a medium changer.
pub const DEVICE_TYPE_CHANGER: u8 = 0x08;

/// Parse standard INQUIRY data (at least the first 36 bytes).
pub fn parse_inquiry(data: &[u8]) -> Result<Inquiry> {
    let b = Bytes::new(data, "INQUIRY data");
    b.slice(0, 36)?;
    let qualifier = b.u8(0)? >> 5;
    if qualifier == 0b011 {
        return Err(b.error("no device at this logical unit (peripheral qualifier 011b)"));
    }
    let text = |at, len| -> Result<String> { Ok(ascii_field(b.slice(at, len)?).unwrap_or_default()) };
    Ok(Inquiry {
        device_type: b.u8(0)? & 0x1f,
        removable: b.bit(1, 7)?,
        vendor: text(8, 8)?,
        product: text(16, 16)?,
        revision: text(32, 4)?,
    })
}

/// Parse the unit serial number VPD page (80h): the serial number, empty
/// when the device has none to report.
pub fn parse_unit_serial_number(data: &[u8]) -> Result<String> {
    let b = Bytes::new(data, "unit serial number page");
    let page = b.u8(1)?;
    if page != 0x80 {
        return Err(b.error(format_args!("page code {page:#04x}, not 0x80")));
    }
    let len = usize::from(b.u16(2)?);
    Ok(ascii_field(b.slice(4, len)?).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_and_garbage_inquiry_is_an_error() {
        assert!(parse_inquiry(&[]).is_err());
        assert!(parse_inquiry(&[0x01; 35]).is_err());
        let mut absent = [0x20u8; 36];
        absent[0] = 0x7f;
        let err = parse_inquiry(&absent).unwrap_err().to_string();
        assert!(err.contains("no device"), "{err}");
        let junk = parse_inquiry(&[0xc5; 36]).unwrap();
        assert_eq!(junk.vendor, "????????", "non-ASCII bytes are masked");
    }

    #[test]
    fn truncated_and_garbage_serial_page_is_an_error() {
        assert!(parse_unit_serial_number(&[0x01, 0x80, 0]).is_err());
        assert!(parse_unit_serial_number(&[0x01, 0x80, 0, 10, b'1', b'2']).is_err());
        assert!(parse_unit_serial_number(&[0x01, 0x83, 0, 0]).unwrap_err().to_string().contains("0x83"));
        assert_eq!(parse_unit_serial_number(&[0x01, 0x80, 0, 2, b' ', b' ']).unwrap(), "");
    }
}
