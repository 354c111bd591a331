//! SCSI commands and responses for tape drives (SSC) and medium changers
//! (SMC), with the common parts of SPC: command descriptor blocks (CDBs)
//! to send, and parsers for what comes back.
//!
//! Pure: no I/O here. The Linux backends ([`crate::linux`]) send these
//! CDBs with `SG_IO` and hand the bytes to these parsers; the tests feed
//! them recorded responses.
//!
//! Invariant: every parser treats its input as untrusted (it comes from
//! hardware, firmware and cables nobody here controls). A short, truncated
//! or inconsistent response is a [`crate::TapeError::Scsi`] naming what
//! was wrong, never a panic: parsers read responses through `Bytes`,
//! which checks every offset and length.

mod attribute;
mod bytes;
mod cdb;
mod element;
mod inquiry;
mod log;
mod mode;
mod position;
mod sense;
mod sense_text;
#[cfg(test)]
pub(crate) mod testdata;

pub use attribute::{Attribute, MAM_BARCODE, MAM_MEDIUM_TYPE, MediumKind, medium_kind, parse_attributes};
pub use cdb::{
    PAGE_ELEMENT_ADDRESS_ASSIGNMENT, PAGE_MEDIUM_CONFIGURATION, PAGE_TAPE_ALERT, PositionForm,
    VPD_UNIT_SERIAL_NUMBER, initialize_element_status, inquiry, inquiry_vpd, log_sense, mode_sense6,
    mode_sense10, move_medium, read_attribute, read_element_status, read_position, request_sense,
    test_unit_ready,
};
pub use element::{
    ElementAddressAssignment, ElementRange, ElementStatus, element_status_len, inventory_from,
    parse_element_address_assignment, parse_element_status,
};
pub use inquiry::{DEVICE_TYPE_CHANGER, DEVICE_TYPE_TAPE, Inquiry, parse_inquiry, parse_unit_serial_number};
pub use log::{CLEANING_FLAGS, parse_tape_alerts, tape_alert_name};
pub use mode::{
    MediumConfiguration, ModeForm, ModeHeader, mode_page, parse_medium_configuration, parse_mode_header,
};
pub use position::{Position, parse_read_position};
pub use sense::{Sense, SenseKey, parse_sense};
pub use sense_text::asc_text;
