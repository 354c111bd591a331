//! READ POSITION data (SSC-4 7.7): where the head is, in logical objects
//! (blocks and filemarks, counted from 0 at the beginning of the
//! partition), and whether it is at the beginning (BOP), the end (EOP) or
//! past the early warning (BPEW) of the partition.

use super::bytes::Bytes;
use super::cdb::PositionForm;
use crate::Result;

/// A parsed READ POSITION response; a field the drive marked unknown is
/// `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// At the beginning of the partition.
    pub bop: bool,
    /// At the end of the partition.
    pub eop: bool,
    /// Beyond the programmable early warning.
    pub bpew: bool,
    pub partition: Option<u32>,
    /// The logical object number of the head (for the short form: the
    /// next object to go to or come from the medium).
    pub first_object: Option<u64>,
    /// Short form: the last object in the drive's buffer.
    pub last_object: Option<u64>,
    /// Long form: the number of filemarks between the beginning of the
    /// partition and the head.
    pub file_number: Option<u64>,
    /// Long form: the number of setmarks likewise.
    pub set_number: Option<u64>,
}

/// Parse READ POSITION data of `form`.
pub fn parse_read_position(data: &[u8], form: PositionForm) -> Result<Position> {
    let b = Bytes::new(data, "READ POSITION data");
    let flags = b.u8(0)?;
    let (bop, eop, bpew) = (flags & 0x80 != 0, flags & 0x40 != 0, flags & 0x01 != 0);
    match form {
        PositionForm::Short => {
            // Byte 0: LOCU (5) first location unknown, LOLU (2) last
            // location unknown.
            b.slice(0, 20)?;
            let locu = flags & 0x20 != 0;
            let lolu = flags & 0x04 != 0;
            Ok(Position {
                bop,
                eop,
                bpew,
                partition: (!locu).then_some(u32::from(b.u8(1)?)),
                first_object: (!locu).then_some(u64::from(b.u32(4)?)),
                last_object: (!lolu).then_some(u64::from(b.u32(8)?)),
                file_number: None,
                set_number: None,
            })
        }
        PositionForm::Long => {
            // Byte 0: MPU (3) mark position unknown, LONU (2) logical
            // object number unknown.
            b.slice(0, 32)?;
            let mpu = flags & 0x08 != 0;
            let lonu = flags & 0x04 != 0;
            Ok(Position {
                bop,
                eop,
                bpew,
                partition: (!lonu).then_some(b.u32(4)?),
                first_object: (!lonu).then_some(b.u64(8)?),
                last_object: None,
                file_number: (!mpu).then_some(b.u64(16)?),
                set_number: (!mpu).then_some(b.u64(24)?),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_form_with_unknown_fields() {
        let mut data = [0u8; 20];
        data[0] = 0x80 | 0x04;
        data[7] = 5;
        let p = parse_read_position(&data, PositionForm::Short).unwrap();
        assert!(p.bop && !p.eop && !p.bpew);
        assert_eq!((p.partition, p.first_object, p.last_object), (Some(0), Some(5), None));
        data[0] = 0x20;
        let p = parse_read_position(&data, PositionForm::Short).unwrap();
        assert_eq!((p.partition, p.first_object), (None, None));
    }

    #[test]
    fn long_form_fields() {
        let mut data = [0u8; 32];
        data[0] = 0x41;
        data[7] = 1;
        data[8..16].copy_from_slice(&0x1_0000_0002u64.to_be_bytes());
        data[23] = 3;
        let p = parse_read_position(&data, PositionForm::Long).unwrap();
        assert!(!p.bop && p.eop && p.bpew);
        assert_eq!(p.partition, Some(1));
        assert_eq!(p.first_object, Some(0x1_0000_0002));
        assert_eq!((p.file_number, p.set_number, p.last_object), (Some(3), Some(0), None));
        data[0] = 0x08;
        assert_eq!(parse_read_position(&data, PositionForm::Long).unwrap().file_number, None);
    }

    #[test]
    fn truncated_position_data_is_an_error() {
        assert!(parse_read_position(&[], PositionForm::Short).is_err());
        assert!(parse_read_position(&[0; 19], PositionForm::Short).is_err());
        let err = parse_read_position(&[0; 20], PositionForm::Long).unwrap_err().to_string();
        assert!(err.contains("READ POSITION data: 20 bytes"), "{err}");
        for junk in [[0xffu8; 32], [0x55; 32]] {
            parse_read_position(&junk, PositionForm::Long).unwrap();
            parse_read_position(&junk, PositionForm::Short).unwrap();
        }
    }
}
