//! Sense data: why a command ended in CHECK CONDITION (SPC-4 4.5), in
//! either format a device may use: fixed (response codes 70h/71h) or
//! descriptor (72h/73h), with the stream-command bits tape drives set
//! (FILEMARK, EOM, ILI) and the INFORMATION field (on a tape READ or WRITE:
//! the residue, what was asked for minus what was done).

use std::fmt;

use super::bytes::Bytes;
use super::sense_text::asc_text;
use crate::Result;

/// The sense key: the class of the condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenseKey {
    NoSense,
    RecoveredError,
    NotReady,
    MediumError,
    HardwareError,
    IllegalRequest,
    UnitAttention,
    DataProtect,
    /// On tape: a read or space ran into blank tape, the end of data.
    BlankCheck,
    VendorSpecific,
    CopyAborted,
    AbortedCommand,
    /// 0Ch, obsolete (was EQUAL).
    Reserved,
    /// On tape: the physical end of the medium; the data was not written.
    VolumeOverflow,
    Miscompare,
    Completed,
}

impl SenseKey {
    /// The key of a 4-bit sense key code (the high bits are ignored).
    pub fn from_code(code: u8) -> SenseKey {
        use SenseKey::*;
        const KEYS: [SenseKey; 16] = [
            NoSense,
            RecoveredError,
            NotReady,
            MediumError,
            HardwareError,
            IllegalRequest,
            UnitAttention,
            DataProtect,
            BlankCheck,
            VendorSpecific,
            CopyAborted,
            AbortedCommand,
            Reserved,
            VolumeOverflow,
            Miscompare,
            Completed,
        ];
        KEYS[usize::from(code & 0x0f)]
    }

    /// The SPC name, as in `NOT READY`.
    pub fn name(self) -> &'static str {
        use SenseKey::*;
        match self {
            NoSense => "NO SENSE",
            RecoveredError => "RECOVERED ERROR",
            NotReady => "NOT READY",
            MediumError => "MEDIUM ERROR",
            HardwareError => "HARDWARE ERROR",
            IllegalRequest => "ILLEGAL REQUEST",
            UnitAttention => "UNIT ATTENTION",
            DataProtect => "DATA PROTECT",
            BlankCheck => "BLANK CHECK",
            VendorSpecific => "VENDOR SPECIFIC",
            CopyAborted => "COPY ABORTED",
            AbortedCommand => "ABORTED COMMAND",
            Reserved => "RESERVED (0Ch)",
            VolumeOverflow => "VOLUME OVERFLOW",
            Miscompare => "MISCOMPARE",
            Completed => "COMPLETED",
        }
    }
}

/// Parsed sense data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sense {
    /// The condition is about an earlier command (response code 71h/73h),
    /// such as a buffered write that failed after it was acknowledged.
    pub deferred: bool,
    /// Fixed (false) or descriptor (true) format.
    pub descriptor_format: bool,
    pub key: SenseKey,
    /// Additional sense code and qualifier (0 when the device sent none).
    pub asc: u8,
    pub ascq: u8,
    /// A filemark was read or spaced over.
    pub filemark: bool,
    /// End of medium: past the early warning, or at the end of partition.
    pub eom: bool,
    /// Incorrect length indicator: the block was not as long as asked.
    pub ili: bool,
    /// The INFORMATION field, when the device marked it valid.
    pub information: Option<u64>,
}

/// Parse sense data (the bytes the device returned, possibly fewer than
/// asked for).
pub fn parse_sense(data: &[u8]) -> Result<Sense> {
    let b = Bytes::new(data, "sense data");
    let code = b.u8(0)? & 0x7f;
    match code {
        0x70 | 0x71 => parse_fixed(b, code == 0x71),
        0x72 | 0x73 => parse_descriptor(b, code == 0x73),
        _ => Err(b.error(format_args!("unknown response code {code:#04x}"))),
    }
}

/// Fixed format: byte 2 holds the bits and the key, 3-6 the information,
/// 7 the additional length, 12-13 ASC and ASCQ.
fn parse_fixed(b: Bytes<'_>, deferred: bool) -> Result<Sense> {
    let flags = b.u8(2)?;
    let additional = usize::from(b.u8(7)?);
    // What the device says it sent, bounded by what arrived: the ASC and
    // ASCQ exist only when both reach them.
    let end = b.len().min(8 + additional);
    let byte_if_sent = |at: usize| if at < end { b.u8(at) } else { Ok(0) };
    let valid = b.bit(0, 7)?;
    Ok(Sense {
        deferred,
        descriptor_format: false,
        key: SenseKey::from_code(flags),
        asc: byte_if_sent(12)?,
        ascq: byte_if_sent(13)?,
        filemark: flags & 0x80 != 0,
        eom: flags & 0x40 != 0,
        ili: flags & 0x20 != 0,
        information: if valid { Some(u64::from(b.u32(3)?)) } else { None },
    })
}

/// Descriptor format: key, ASC and ASCQ in bytes 1-3, the additional
/// length in byte 7, then descriptors; this reads the information (00h)
/// and stream commands (04h) descriptors and skips the others.
fn parse_descriptor(b: Bytes<'_>, deferred: bool) -> Result<Sense> {
    let mut sense = Sense {
        deferred,
        descriptor_format: true,
        key: SenseKey::from_code(b.u8(1)?),
        asc: b.u8(2)?,
        ascq: b.u8(3)?,
        filemark: false,
        eom: false,
        ili: false,
        information: None,
    };
    let end = b.len().min(8 + usize::from(b.u8(7)?));
    let mut at = 8;
    while at < end {
        let kind = b.u8(at)?;
        let len = 2 + usize::from(b.u8(at + 1)?);
        if at + len > end {
            return Err(b.error(format_args!("descriptor {kind:#04x} at offset {at} overruns the data")));
        }
        let d = b.sub(at, len)?;
        match kind {
            // Information, when its VALID bit is set.
            0x00 if d.bit(2, 7)? => sense.information = Some(d.u64(4)?),
            0x04 => {
                let bits = d.u8(3)?;
                sense.filemark = bits & 0x80 != 0;
                sense.eom = bits & 0x40 != 0;
                sense.ili = bits & 0x20 != 0;
            }
            _ => {}
        }
        at += len;
    }
    Ok(sense)
}

impl Sense {
    /// The SPC text of the ASC/ASCQ pair, or the numbers.
    pub fn asc_description(&self) -> String {
        match asc_text(self.asc, self.ascq) {
            Some(text) => text.to_string(),
            None if self.asc >= 0x80 || self.ascq >= 0x80 => {
                format!("vendor specific (ASC {:02X}h ASCQ {:02X}h)", self.asc, self.ascq)
            }
            None => format!("ASC {:02X}h ASCQ {:02X}h", self.asc, self.ascq),
        }
    }

    /// A line for errors and logs: the key, the ASC/ASCQ text and the bits,
    /// as in `ILLEGAL REQUEST: medium source element empty (3Bh/0Eh)`.
    pub fn text(&self) -> String {
        let mut s = format!("{}: {}", self.key.name(), self.asc_description());
        if asc_text(self.asc, self.ascq).is_some() {
            s += &format!(" ({:02X}h/{:02X}h)", self.asc, self.ascq);
        }
        for (set, name) in [(self.filemark, "FILEMARK"), (self.eom, "EOM"), (self.ili, "ILI")] {
            if set {
                s += &format!(" [{name}]");
            }
        }
        if self.deferred {
            s += " (deferred error)";
        }
        s
    }

    /// A filemark was met (read or spaced over).
    pub fn is_filemark(&self) -> bool {
        self.filemark || (self.asc, self.ascq) == (0x00, 0x01)
    }

    /// A read or space found the end of what was written.
    pub fn is_end_of_data(&self) -> bool {
        self.key == SenseKey::BlankCheck || (self.asc, self.ascq) == (0x00, 0x05)
    }

    /// A write succeeded but the head is past the early warning: room for
    /// little more than the filemarks closing the volume.
    pub fn is_early_warning(&self) -> bool {
        self.eom && matches!(self.key, SenseKey::NoSense | SenseKey::RecoveredError)
    }

    /// The physical end of the medium: what was asked was not written.
    pub fn is_volume_overflow(&self) -> bool {
        self.key == SenseKey::VolumeOverflow
    }

    /// The cartridge is write-protected (its tab, or the drive's setting).
    pub fn is_write_protected(&self) -> bool {
        self.key == SenseKey::DataProtect && self.asc == 0x27
    }

    /// The cartridge is WORM and the command would overwrite data.
    pub fn is_worm_overwrite(&self) -> bool {
        self.key == SenseKey::DataProtect && (self.asc, self.ascq) == (0x30, 0x0c)
    }

    /// No cartridge is loaded.
    pub fn is_medium_not_present(&self) -> bool {
        self.key == SenseKey::NotReady && self.asc == 0x3a
    }

    /// The device is busy becoming ready or with another operation: the
    /// same command may succeed later.
    pub fn is_in_progress(&self) -> bool {
        self.key == SenseKey::NotReady && self.asc == 0x04 && matches!(self.ascq, 0x01 | 0x07)
    }
}

impl fmt::Display for Sense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sense_key_has_a_name() {
        for code in 0..16u8 {
            assert!(!SenseKey::from_code(code).name().is_empty());
        }
        assert_eq!(SenseKey::from_code(0xf8), SenseKey::BlankCheck, "only the low nibble counts");
    }

    #[test]
    fn short_fixed_sense_has_no_asc() {
        // An 8-byte fixed sense with additional length 0: key only.
        let s = parse_sense(&[0x70, 0, 0x06, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!((s.key, s.asc, s.ascq), (SenseKey::UnitAttention, 0, 0));
        // The additional length promises ASC/ASCQ that did not arrive.
        let s = parse_sense(&[0x70, 0, 0x02, 0, 0, 0, 0, 10, 0, 0, 0, 0]).unwrap();
        assert_eq!((s.key, s.asc), (SenseKey::NotReady, 0));
    }

    #[test]
    fn vendor_and_unknown_pairs_print_as_numbers() {
        let mut s = parse_sense(&[0x70, 0, 0x04, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x83, 0x01]).unwrap();
        assert_eq!(s.text(), "HARDWARE ERROR: vendor specific (ASC 83h ASCQ 01h)");
        s.asc = 0x3b;
        s.ascq = 0x0f;
        assert_eq!(s.text(), "HARDWARE ERROR: ASC 3Bh ASCQ 0Fh");
    }

    #[test]
    fn truncated_and_garbage_sense_is_an_error() {
        assert!(parse_sense(&[]).is_err());
        assert!(parse_sense(&[0x70, 0]).is_err());
        assert!(parse_sense(&[0x70, 0, 0x05, 0, 0, 0, 0]).is_err(), "no additional length byte");
        assert!(parse_sense(&[0xf0, 0, 0x05, 0]).is_err(), "VALID but no information field");
        assert!(parse_sense(&[0x72, 0x05, 0x24]).is_err());
        let err = parse_sense(&[0x7f, 0, 0, 0, 0, 0, 0, 0]).unwrap_err().to_string();
        assert!(err.contains("response code 0x7f"), "{err}");
        for junk in [&[0u8; 18][..], &[0xff; 18], &[0x55; 3]] {
            let _ = parse_sense(junk);
        }
    }

    #[test]
    fn descriptor_overrunning_the_data_is_an_error() {
        // Information descriptor claiming 10 bytes with only 4 present.
        let data = [0x72, 0x08, 0x00, 0x05, 0, 0, 0, 6, 0x00, 0x0a, 0x80, 0, 0, 0];
        let err = parse_sense(&data).unwrap_err().to_string();
        assert!(err.contains("overruns"), "{err}");
    }

    #[test]
    fn descriptor_format_with_unknown_descriptors() {
        // A sense-key-specific descriptor (02h) is skipped; the stream
        // commands descriptor (04h) sets the bits.
        let data = [0x72, 0x00, 0x00, 0x01, 0, 0, 0, 12, 0x02, 0x06, 0, 0, 0, 0, 0, 0, 0x04, 0x02, 0, 0x80];
        let s = parse_sense(&data).unwrap();
        assert!(s.filemark && !s.eom && !s.ili && s.information.is_none());
        assert!(s.is_filemark());
    }
}
