//! Human text for the additional sense code and qualifier (ASC/ASCQ)
//! pairs tape drives and medium changers report, as SPC-4 Annex D names
//! them (lower case). Only the common ones: anything else is printed as
//! numbers by [`Sense::text`](super::Sense::text).

/// `(ASC, ASCQ, text)`, sorted by ASC then ASCQ.
const ASC_TEXT: &[(u8, u8, &str)] = &[
    (0x00, 0x00, "no additional sense information"),
    (0x00, 0x01, "filemark detected"),
    (0x00, 0x02, "end-of-partition/medium detected"),
    (0x00, 0x03, "setmark detected"),
    (0x00, 0x04, "beginning-of-partition/medium detected"),
    (0x00, 0x05, "end-of-data detected"),
    (0x00, 0x16, "operation in progress"),
    (0x00, 0x17, "cleaning requested"),
    (0x00, 0x18, "erase operation in progress"),
    (0x00, 0x19, "locate operation in progress"),
    (0x00, 0x1a, "rewind operation in progress"),
    (0x03, 0x02, "excessive write errors"),
    (0x04, 0x00, "logical unit not ready, cause not reportable"),
    (0x04, 0x01, "logical unit is in process of becoming ready"),
    (0x04, 0x02, "logical unit not ready, initializing command required"),
    (0x04, 0x03, "logical unit not ready, manual intervention required"),
    (0x04, 0x07, "logical unit not ready, operation in progress"),
    (0x04, 0x12, "logical unit not ready, offline"),
    (0x08, 0x00, "logical unit communication failure"),
    (0x0c, 0x00, "write error"),
    (0x11, 0x00, "unrecovered read error"),
    (0x14, 0x00, "recorded entity not found"),
    (0x14, 0x03, "end-of-data not found"),
    (0x15, 0x01, "mechanical positioning error"),
    (0x1a, 0x00, "parameter list length error"),
    (0x20, 0x00, "invalid command operation code"),
    (0x21, 0x01, "invalid element address"),
    (0x24, 0x00, "invalid field in CDB"),
    (0x25, 0x00, "logical unit not supported"),
    (0x26, 0x00, "invalid field in parameter list"),
    (0x27, 0x00, "write protected"),
    (0x27, 0x01, "hardware write protected"),
    (0x27, 0x02, "logical unit software write protected"),
    (0x28, 0x00, "not ready to ready change, medium may have changed"),
    (0x28, 0x01, "import or export element accessed"),
    (0x29, 0x00, "power on, reset, or bus device reset occurred"),
    (0x2a, 0x01, "mode parameters changed"),
    (0x2c, 0x00, "command sequence error"),
    (0x30, 0x00, "incompatible medium installed"),
    (0x30, 0x01, "cannot read medium - unknown format"),
    (0x30, 0x02, "cannot read medium - incompatible format"),
    (0x30, 0x03, "cleaning cartridge installed"),
    (0x30, 0x05, "cannot write medium - incompatible format"),
    (0x30, 0x07, "cleaning failure"),
    (0x30, 0x0c, "WORM medium - overwrite attempted"),
    (0x30, 0x0d, "WORM medium - integrity check"),
    (0x31, 0x00, "medium format corrupted"),
    (0x33, 0x00, "tape length error"),
    (0x3a, 0x00, "medium not present"),
    (0x3b, 0x00, "sequential positioning error"),
    (0x3b, 0x01, "tape position error at beginning-of-medium"),
    (0x3b, 0x02, "tape position error at end-of-medium"),
    (0x3b, 0x08, "reposition error"),
    (0x3b, 0x0d, "medium destination element full"),
    (0x3b, 0x0e, "medium source element empty"),
    (0x3b, 0x11, "medium magazine not accessible"),
    (0x3b, 0x12, "medium magazine removed"),
    (0x3b, 0x13, "medium magazine inserted"),
    (0x3b, 0x14, "medium magazine locked"),
    (0x3b, 0x15, "medium magazine unlocked"),
    (0x3b, 0x1a, "data transfer element removed"),
    (0x3f, 0x01, "microcode has been changed"),
    (0x44, 0x00, "internal target failure"),
    (0x50, 0x00, "write append error"),
    (0x50, 0x01, "write append position error"),
    (0x51, 0x00, "erase failure"),
    (0x52, 0x00, "cartridge fault"),
    (0x53, 0x00, "media load or eject failed"),
    (0x53, 0x01, "unload tape failure"),
    (0x53, 0x02, "medium removal prevented"),
    (0x5a, 0x01, "operator medium removal request"),
    (0x5d, 0x00, "failure prediction threshold exceeded"),
    (0x5d, 0xff, "failure prediction threshold exceeded (false)"),
];

/// The SPC text of an ASC/ASCQ pair, for the pairs common on tape drives
/// and changers; `None` for the others (and for vendor-specific ones).
pub fn asc_text(asc: u8, ascq: u8) -> Option<&'static str> {
    ASC_TEXT.binary_search_by_key(&(asc, ascq), |&(a, q, _)| (a, q)).ok().map(|i| ASC_TEXT[i].2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_has_no_duplicates() {
        assert!(ASC_TEXT.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
    }

    #[test]
    fn known_and_unknown_pairs() {
        assert_eq!(asc_text(0x3b, 0x0e), Some("medium source element empty"));
        assert_eq!(asc_text(0x27, 0x00), Some("write protected"));
        assert_eq!(asc_text(0x00, 0x05), Some("end-of-data detected"));
        assert_eq!(asc_text(0x3b, 0x0f), None);
        assert_eq!(asc_text(0x83, 0x01), None);
    }
}
