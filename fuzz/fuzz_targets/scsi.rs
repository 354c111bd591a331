//! Fuzz the SCSI answer parsers of the tape crate (sense data, READ
//! ELEMENT STATUS, mode pages, TapeAlert, READ POSITION, INQUIRY, MAM)
//! and Cairn's media label: bytes from hardware, firmware or a cartridge
//! nobody trusts never panic a parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tape::scsi::{self, ModeForm, PositionForm};

fuzz_target!(|data: &[u8]| {
    let _ = scsi::parse_sense(data);
    for dvcid in [false, true] {
        if let Ok(status) = scsi::parse_element_status(data, dvcid) {
            let _ = scsi::inventory_from(status.elements);
        }
    }
    let _ = scsi::element_status_len(data);
    for form in [ModeForm::Six, ModeForm::Ten] {
        let _ = scsi::parse_element_address_assignment(data, form);
        let _ = scsi::parse_mode_header(data, form);
        let _ = scsi::parse_medium_configuration(data, form);
        let _ = scsi::mode_page(data, form, 0x1d);
    }
    let _ = scsi::parse_tape_alerts(data);
    for form in [PositionForm::Short, PositionForm::Long] {
        let _ = scsi::parse_read_position(data, form);
    }
    let _ = scsi::parse_inquiry(data);
    let _ = scsi::parse_unit_serial_number(data);
    if let Ok(attributes) = scsi::parse_attributes(data) {
        let _ = scsi::medium_kind(&attributes);
        for a in &attributes {
            let _ = a.text();
        }
    }
});
