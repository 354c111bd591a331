//! Command descriptor blocks: the bytes of each command this crate sends,
//! laid out as SPC-4, SSC-4 and SMC-3 define them. Multi-byte fields are
//! big-endian; the CONTROL byte is always 0.

use crate::changer::ElementKind;

/// MODE SENSE page of a medium changer: where its elements are (SMC-3).
pub const PAGE_ELEMENT_ADDRESS_ASSIGNMENT: u8 = 0x1d;

/// MODE SENSE page of a tape drive: the Medium Configuration page
/// (SSC-3/SSC-4), whose WORMM bit says the loaded cartridge is WORM. The
/// same page code as [`PAGE_ELEMENT_ADDRESS_ASSIGNMENT`]: page codes are
/// per device type.
pub const PAGE_MEDIUM_CONFIGURATION: u8 = 0x1d;

/// LOG SENSE page of a tape drive: the TapeAlert flags (SSC-4).
pub const PAGE_TAPE_ALERT: u8 = 0x2e;

/// INQUIRY vital product data page: the unit serial number (SPC-4).
pub const VPD_UNIT_SERIAL_NUMBER: u8 = 0x80;

/// The two READ POSITION forms this crate reads (SSC-4 7.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionForm {
    /// Service action 00h, 20 bytes: 32-bit logical object numbers, the
    /// first and last in the drive's buffer.
    Short,
    /// Service action 06h, 32 bytes: 64-bit logical object number, file
    /// (filemark) number and set number.
    Long,
}

/// TEST UNIT READY (00h): GOOD when a cartridge is loaded and ready.
pub fn test_unit_ready() -> [u8; 6] {
    [0x00, 0, 0, 0, 0, 0]
}

/// REQUEST SENSE (03h): the sense data of the last failed command, in
/// descriptor format when `descriptor`, else fixed format.
pub fn request_sense(descriptor: bool, allocation_length: u8) -> [u8; 6] {
    [0x03, u8::from(descriptor), 0, 0, allocation_length, 0]
}

/// INITIALIZE ELEMENT STATUS (07h): the changer checks every element (and
/// reads every barcode) again. Slow: minutes on a large library.
pub fn initialize_element_status() -> [u8; 6] {
    [0x07, 0, 0, 0, 0, 0]
}

/// Standard INQUIRY (12h): device type, vendor, product, revision.
pub fn inquiry(allocation_length: u16) -> [u8; 6] {
    let [hi, lo] = allocation_length.to_be_bytes();
    [0x12, 0, 0, hi, lo, 0]
}

/// INQUIRY (12h) of vital product data page `page` (EVPD set), such as
/// [`VPD_UNIT_SERIAL_NUMBER`].
pub fn inquiry_vpd(page: u8, allocation_length: u16) -> [u8; 6] {
    let [hi, lo] = allocation_length.to_be_bytes();
    [0x12, 0x01, page, hi, lo, 0]
}

/// MODE SENSE(6) (1Ah) of the current values of `page`/`subpage`, without
/// block descriptors when `dbd`.
pub fn mode_sense6(page: u8, subpage: u8, dbd: bool, allocation_length: u8) -> [u8; 6] {
    // PC (bits 7-6 of byte 2) = 00b: current values.
    [0x1a, if dbd { 0x08 } else { 0 }, page & 0x3f, subpage, allocation_length, 0]
}

/// MODE SENSE(10) (5Ah) of the current values of `page`/`subpage`, without
/// block descriptors when `dbd`.
pub fn mode_sense10(page: u8, subpage: u8, dbd: bool, allocation_length: u16) -> [u8; 10] {
    let [hi, lo] = allocation_length.to_be_bytes();
    [0x5a, if dbd { 0x08 } else { 0 }, page & 0x3f, subpage, 0, 0, 0, hi, lo, 0]
}

/// LOG SENSE (4Dh) of the cumulative values of `page`/`subpage`, from the
/// first parameter. For [`PAGE_TAPE_ALERT`], reading the page clears the
/// flags on most drives.
pub fn log_sense(page: u8, subpage: u8, allocation_length: u16) -> [u8; 10] {
    let [hi, lo] = allocation_length.to_be_bytes();
    // PC (bits 7-6 of byte 2) = 01b: cumulative values; parameter pointer 0.
    [0x4d, 0, 0x40 | (page & 0x3f), subpage, 0, 0, 0, hi, lo, 0]
}

/// READ POSITION (34h) in `form`.
pub fn read_position(form: PositionForm) -> [u8; 10] {
    let service_action = match form {
        PositionForm::Short => 0x00,
        PositionForm::Long => 0x06,
    };
    // The allocation length (bytes 7-8) is for the extended form only and
    // shall be zero for these two.
    [0x34, service_action, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// READ ATTRIBUTE (8Ch), service action ATTRIBUTE VALUES (00h): the
/// cartridge memory (MAM) attributes of `partition` from
/// `first_attribute` on (SPC-4 6.16). `allocation_length` is capped at
/// what the field holds.
pub fn read_attribute(first_attribute: u16, partition: u8, allocation_length: u32) -> [u8; 16] {
    let [a_hi, a_lo] = first_attribute.to_be_bytes();
    let [l0, l1, l2, l3] = allocation_length.to_be_bytes();
    [0x8c, 0x00, 0, 0, 0, 0, 0, partition, a_hi, a_lo, l0, l1, l2, l3, 0, 0]
}

/// The SMC-3 element type code of `kind`; `None` (code 0) is every kind.
fn element_type_code(kind: Option<ElementKind>) -> u8 {
    match kind {
        None => 0,
        Some(ElementKind::Transport) => 1,
        Some(ElementKind::Storage) => 2,
        Some(ElementKind::ImportExport) => 3,
        Some(ElementKind::Drive) => 4,
    }
}

/// READ ELEMENT STATUS (B8h, SMC-3 6.10): the status of up to `count`
/// elements of `kind` (all kinds when `None`) from address `start` on;
/// with their primary volume tags (barcodes) when `voltag`, and the drives'
/// device identifiers (serial numbers) when `dvcid`. `allocation_length`
/// is capped at what its 3-byte field holds (16 MiB - 1).
pub fn read_element_status(
    kind: Option<ElementKind>,
    start: u16,
    count: u16,
    voltag: bool,
    dvcid: bool,
    allocation_length: u32,
) -> [u8; 12] {
    let [s_hi, s_lo] = start.to_be_bytes();
    let [c_hi, c_lo] = count.to_be_bytes();
    let [_, l0, l1, l2] = allocation_length.min(0x00ff_ffff).to_be_bytes();
    let byte1 = if voltag { 0x10 } else { 0 } | element_type_code(kind);
    // Byte 6: CURDATA (bit 1) stays 0, so the changer may move the robot
    // to read barcodes it has not read yet; DVCID is bit 0.
    [0xb8, byte1, s_hi, s_lo, c_hi, c_lo, u8::from(dvcid), l0, l1, l2, 0, 0]
}

/// MOVE MEDIUM (A5h, SMC-3 6.6): `transport` carries the cartridge in
/// element `source` to the empty element `destination`. A `transport` of
/// 0 lets the changer use its default transport.
pub fn move_medium(transport: u16, source: u16, destination: u16) -> [u8; 12] {
    let [t_hi, t_lo] = transport.to_be_bytes();
    let [s_hi, s_lo] = source.to_be_bytes();
    let [d_hi, d_lo] = destination.to_be_bytes();
    // Byte 10 bit 0 is INVERT (turn the cartridge over): never, for tape.
    [0xa5, 0, t_hi, t_lo, s_hi, s_lo, d_hi, d_lo, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_byte_commands() {
        assert_eq!(test_unit_ready(), [0; 6]);
        assert_eq!(request_sense(false, 252), [0x03, 0, 0, 0, 252, 0]);
        assert_eq!(request_sense(true, 96), [0x03, 1, 0, 0, 96, 0]);
        assert_eq!(initialize_element_status(), [0x07, 0, 0, 0, 0, 0]);
        assert_eq!(inquiry(96), [0x12, 0, 0, 0, 96, 0]);
        assert_eq!(inquiry_vpd(VPD_UNIT_SERIAL_NUMBER, 0x0104), [0x12, 1, 0x80, 0x01, 0x04, 0]);
        assert_eq!(mode_sense6(0x1d, 0, true, 255), [0x1a, 0x08, 0x1d, 0, 255, 0]);
    }

    #[test]
    fn ten_byte_commands() {
        assert_eq!(mode_sense10(0x1d, 0, true, 0x0200), [0x5a, 0x08, 0x1d, 0, 0, 0, 0, 0x02, 0x00, 0]);
        assert_eq!(mode_sense10(0x3f, 0xff, false, 64), [0x5a, 0, 0x3f, 0xff, 0, 0, 0, 0, 64, 0]);
        assert_eq!(log_sense(PAGE_TAPE_ALERT, 0, 0x0144), [0x4d, 0, 0x6e, 0, 0, 0, 0, 0x01, 0x44, 0]);
        assert_eq!(read_position(PositionForm::Short), [0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(read_position(PositionForm::Long), [0x34, 6, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn twelve_and_sixteen_byte_commands() {
        assert_eq!(
            read_element_status(Some(ElementKind::Drive), 0x01f4, 4, true, true, 0x8000),
            [0xb8, 0x14, 0x01, 0xf4, 0x00, 0x04, 0x01, 0x00, 0x80, 0x00, 0, 0]
        );
        assert_eq!(
            read_element_status(Some(ElementKind::Storage), 0x1000, 300, true, false, 0x0123_4567),
            [0xb8, 0x12, 0x10, 0x00, 0x01, 0x2c, 0x00, 0xff, 0xff, 0xff, 0, 0],
            "the allocation length is capped at 3 bytes"
        );
        assert_eq!(read_element_status(None, 0, 0xffff, false, false, 16)[..2], [0xb8, 0x00]);
        assert_eq!(read_element_status(Some(ElementKind::Transport), 0, 1, false, false, 16)[1], 0x01);
        assert_eq!(read_element_status(Some(ElementKind::ImportExport), 0, 1, false, false, 16)[1], 0x03);
        assert_eq!(move_medium(1, 0x1002, 0x0100), [0xa5, 0, 0, 1, 0x10, 0x02, 0x01, 0x00, 0, 0, 0, 0]);
        assert_eq!(
            read_attribute(0x0408, 0, 0x100),
            [0x8c, 0, 0, 0, 0, 0, 0, 0, 0x04, 0x08, 0, 0, 0x01, 0x00, 0, 0]
        );
    }
}
