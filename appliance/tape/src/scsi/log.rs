//! The TapeAlert log page (2Eh, SSC-4 8.2.3): 64 one-bit flags by which a
//! drive says what is wrong with itself or its cartridge (the cleaning
//! flags among them). A LOG SENSE response is a 4-byte page header, then
//! log parameters: a 2-byte parameter code (here the flag number, 1-64), a
//! control byte, a length, and the value (here one byte whose bit 0 is the
//! flag).

use super::bytes::Bytes;
use crate::Result;
use crate::drive::TapeAlert;

/// The TapeAlert flag names, 1 to 64, as SSC-4 Annex A names them.
/// Flags 40-46 were the loader flags of the original TapeAlert
/// specification and are obsolete in SSC; 62-64 are reserved.
const NAMES: [&str; 64] = [
    "read warning",
    "write warning",
    "hard error",
    "media",
    "read failure",
    "write failure",
    "media life",
    "not data grade",
    "write protect",
    "no removal",
    "cleaning media",
    "unsupported format",
    "recoverable mechanical cartridge failure",
    "unrecoverable mechanical cartridge failure",
    "memory chip in cartridge failure",
    "forced eject",
    "read only format",
    "tape directory corrupted on load",
    "nearing media life",
    "clean now",
    "clean periodic",
    "expired cleaning media",
    "invalid cleaning tape",
    "retension requested",
    "multi-port interface error on a primary port",
    "cooling fan failure",
    "power supply failure",
    "power consumption",
    "drive preventive maintenance required",
    "hardware A",
    "hardware B",
    "primary interface",
    "eject media",
    "microcode update failure",
    "drive humidity",
    "drive temperature",
    "drive voltage",
    "predictive failure",
    "diagnostics required",
    "loader hardware A (obsolete)",
    "loader stray tape (obsolete)",
    "loader hardware B (obsolete)",
    "loader door (obsolete)",
    "loader hardware C (obsolete)",
    "loader magazine (obsolete)",
    "loader predictive failure (obsolete)",
    "external data encryption control - communications failure",
    "external data encryption control - key manager returned an error",
    "diminished native capacity",
    "lost statistics",
    "tape directory invalid at unload",
    "tape system area write failure",
    "tape system area read failure",
    "no start of data",
    "loading or threading failure",
    "unrecoverable unload failure",
    "automation interface failure",
    "microcode failure",
    "WORM medium - integrity check failed",
    "WORM medium - overwrite attempted",
    "encryption policy violation",
    "reserved (3Eh)",
    "reserved (3Fh)",
    "reserved (40h)",
];

/// The TapeAlert flags that ask for a cleaning cartridge: clean now (14h)
/// and clean periodic (15h).
pub const CLEANING_FLAGS: [u8; 2] = [0x14, 0x15];

/// The name of TapeAlert flag `flag` (1-64); flags outside that range
/// are vendor-specific.
pub fn tape_alert_name(flag: u8) -> &'static str {
    usize::from(flag).checked_sub(1).and_then(|i| NAMES.get(i)).copied().unwrap_or("vendor specific")
}

/// Parse a LOG SENSE response for the TapeAlert page into the flags that
/// are set, in flag order. Parameters past flag 64 (vendor-specific) are
/// ignored.
pub fn parse_tape_alerts(data: &[u8]) -> Result<Vec<TapeAlert>> {
    let b = Bytes::new(data, "TapeAlert log page");
    let code = b.u8(0)? & 0x3f;
    if code != 0x2e {
        return Err(b.error(format_args!("page code {code:#04x}, not 0x2e")));
    }
    let end = 4 + usize::from(b.u16(2)?);
    if end > b.len() {
        return Err(b.error(format_args!("truncated: the page has {end} bytes, {} arrived", b.len())));
    }
    let mut alerts = Vec::new();
    let mut at = 4;
    while at < end {
        let param = b.u16(at)?;
        let len = usize::from(b.u8(at + 3)?);
        if at + 4 + len > end {
            return Err(b.error(format_args!("parameter {param:#06x} at offset {at} overruns the page")));
        }
        if let (1..=64, Some(value)) = (param, b.slice(at + 4, len)?.first())
            && value & 0x01 != 0
        {
            let flag = param as u8;
            alerts.push(TapeAlert { flag, name: tape_alert_name(flag).to_string() });
        }
        at += 4 + len;
    }
    alerts.sort_by_key(|a| a.flag);
    alerts.dedup_by_key(|a| a.flag);
    Ok(alerts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_standard_numbering() {
        assert_eq!(tape_alert_name(0x01), "read warning");
        assert_eq!(tape_alert_name(0x09), "write protect");
        assert_eq!(tape_alert_name(0x14), "clean now");
        assert_eq!(tape_alert_name(0x15), "clean periodic");
        assert_eq!(tape_alert_name(0x1f), "hardware B");
        assert_eq!(tape_alert_name(0x37), "loading or threading failure");
        assert_eq!(tape_alert_name(0x3c), "WORM medium - overwrite attempted");
        assert_eq!(tape_alert_name(0x40), "reserved (40h)");
        assert_eq!(tape_alert_name(0), "vendor specific");
        assert_eq!(tape_alert_name(0x41), "vendor specific");
        assert_eq!(CLEANING_FLAGS.map(tape_alert_name), ["clean now", "clean periodic"]);
    }

    #[test]
    fn truncated_and_garbage_pages_are_errors() {
        assert!(parse_tape_alerts(&[]).is_err());
        assert!(parse_tape_alerts(&[0x2e, 0, 0]).is_err());
        let err = parse_tape_alerts(&[0x2d, 0, 0, 0]).unwrap_err().to_string();
        assert!(err.contains("page code 0x2d"), "{err}");
        // The header promises 10 bytes; 5 arrived.
        let err = parse_tape_alerts(&[0x2e, 0, 0, 10, 0, 1, 0, 1, 1]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        // A parameter longer than the page.
        let err = parse_tape_alerts(&[0x2e, 0, 0, 5, 0, 1, 0, 9, 1]).unwrap_err().to_string();
        assert!(err.contains("overruns"), "{err}");
        // A parameter header cut in the middle.
        assert!(parse_tape_alerts(&[0x2e, 0, 0, 2, 0, 1]).is_err());
    }

    #[test]
    fn zero_length_and_vendor_parameters_are_ignored() {
        let data = [0x2e, 0, 0, 14, 0, 3, 0, 0, 0x80, 0x01, 0, 1, 1, 0, 0x14, 0, 1, 1];
        let alerts = parse_tape_alerts(&data).unwrap();
        assert_eq!(alerts, [TapeAlert { flag: 0x14, name: "clean now".into() }]);
    }
}
