//! Medium changer responses (SMC-3): the element address assignment mode
//! page (where each kind of element is) and READ ELEMENT STATUS data (what
//! each element holds), parsed into [`Element`]s and an [`Inventory`].
//!
//! READ ELEMENT STATUS data is an 8-byte header, then one element status
//! page per element type reported: an 8-byte page header (type, whether
//! volume tags are present, descriptor length, byte count) and fixed-length
//! element descriptors. A descriptor is 12 bytes of status, then the
//! primary volume tag (36 bytes) and the alternate one (36 bytes) when the
//! page header says so, then (with DVCID, SMC-3) an identification
//! descriptor, then vendor bytes up to the descriptor length.

use super::bytes::{Bytes, ascii_field};
use super::mode::{ModeForm, mode_page};
use super::sense_text::asc_text;
use crate::Result;
use crate::changer::{Element, ElementKind, Inventory};

/// The addresses of one kind of element: `count` of them from `first`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ElementRange {
    pub first: u16,
    pub count: u16,
}

/// Where a changer's elements are: the element address assignment mode
/// page (1Dh).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ElementAddressAssignment {
    pub transports: ElementRange,
    pub storage: ElementRange,
    pub import_export: ElementRange,
    pub drives: ElementRange,
}

impl ElementAddressAssignment {
    /// The range of `kind`.
    pub fn range(&self, kind: ElementKind) -> ElementRange {
        match kind {
            ElementKind::Transport => self.transports,
            ElementKind::Storage => self.storage,
            ElementKind::ImportExport => self.import_export,
            ElementKind::Drive => self.drives,
        }
    }
}

/// Parse a MODE SENSE response holding the element address assignment
/// page (in `form`).
pub fn parse_element_address_assignment(data: &[u8], form: ModeForm) -> Result<ElementAddressAssignment> {
    let page = Bytes::new(mode_page(data, form, 0x1d)?, "element address assignment page");
    if page.len() < 18 {
        return Err(page.error(format_args!("{} bytes, want at least 18", page.len())));
    }
    let range = |at: usize| -> Result<ElementRange> {
        let r = ElementRange { first: page.u16(at)?, count: page.u16(at + 2)? };
        if u32::from(r.first) + u32::from(r.count) > 0x1_0000 {
            return Err(
                page.error(format_args!("{} elements from {} run past address FFFFh", r.count, r.first))
            );
        }
        Ok(r)
    };
    Ok(ElementAddressAssignment {
        transports: range(2)?,
        storage: range(6)?,
        import_export: range(10)?,
        drives: range(14)?,
    })
}

/// READ ELEMENT STATUS data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementStatus {
    /// The address of the first element reported.
    pub first_address: u16,
    /// How many elements the changer had to report (it may have sent
    /// fewer descriptors than asked for).
    pub available: u16,
    pub elements: Vec<Element>,
}

/// How long the complete READ ELEMENT STATUS data is (header included),
/// from its header: when it exceeds the allocation length, ask again with
/// this much.
pub fn element_status_len(data: &[u8]) -> Result<usize> {
    let b = Bytes::new(data, "element status data");
    Ok(8 + b.u24(5)? as usize)
}

/// Parse READ ELEMENT STATUS data. `dvcid` says whether the command asked
/// for device identifiers (only then do the descriptors carry them).
/// Pages of element types this crate does not know are skipped.
pub fn parse_element_status(data: &[u8], dvcid: bool) -> Result<ElementStatus> {
    let b = Bytes::new(data, "element status data");
    let end = element_status_len(data)?;
    if end > b.len() {
        return Err(b.error(format_args!(
            "truncated: the changer has {end} bytes, {} arrived (allocation length too small?)",
            b.len()
        )));
    }
    let mut status = ElementStatus { first_address: b.u16(0)?, available: b.u16(2)?, elements: Vec::new() };
    let mut at = 8;
    while at < end {
        let page = b.sub(at, 8)?;
        let bytes = page.u24(5)? as usize;
        if at + 8 + bytes > end {
            return Err(b.error(format_args!("element status page at offset {at} overruns the data")));
        }
        let descriptors = b.sub(at + 8, bytes)?;
        let kind = match page.u8(0)? & 0x0f {
            1 => Some(ElementKind::Transport),
            2 => Some(ElementKind::Storage),
            3 => Some(ElementKind::ImportExport),
            4 => Some(ElementKind::Drive),
            _ => None,
        };
        if let Some(kind) = kind {
            let layout = Layout {
                kind,
                len: usize::from(page.u16(2)?),
                pvoltag: page.bit(1, 7)?,
                avoltag: page.bit(1, 6)?,
                dvcid,
            };
            parse_page(descriptors, &layout, &mut status.elements)?;
        }
        at += 8 + bytes;
    }
    Ok(status)
}

/// What an element status page header says of its descriptors.
struct Layout {
    kind: ElementKind,
    len: usize,
    pvoltag: bool,
    avoltag: bool,
    dvcid: bool,
}

impl Layout {
    /// Where the identification descriptor starts.
    fn identifier_offset(&self) -> usize {
        12 + if self.pvoltag { 36 } else { 0 } + if self.avoltag { 36 } else { 0 }
    }
}

fn parse_page(data: Bytes<'_>, layout: &Layout, out: &mut Vec<Element>) -> Result<()> {
    if data.len() == 0 {
        return Ok(());
    }
    let min = layout.identifier_offset();
    if layout.len < min {
        return Err(data.error(format_args!(
            "{:?} descriptors of {} bytes, shorter than the {min} their page header implies",
            layout.kind, layout.len
        )));
    }
    if !data.len().is_multiple_of(layout.len) {
        return Err(data.error(format_args!(
            "{} bytes of {:?} descriptors is not a whole number of {}-byte descriptors",
            data.len(),
            layout.kind,
            layout.len
        )));
    }
    for i in 0..data.len() / layout.len {
        out.push(parse_descriptor(data.sub(i * layout.len, layout.len)?, layout)?);
    }
    Ok(())
}

fn parse_descriptor(d: Bytes<'_>, layout: &Layout) -> Result<Element> {
    let flags = d.u8(2)?;
    let (asc, ascq) = (d.u8(4)?, d.u8(5)?);
    let exception = (flags & 0x04 != 0).then(|| match asc_text(asc, ascq) {
        Some(text) => text.to_string(),
        None => format!("ASC {asc:02X}h ASCQ {ascq:02X}h"),
    });
    let barcode = if layout.pvoltag { ascii_field(d.slice(12, 32)?) } else { None };
    let identifier = if layout.dvcid && layout.kind == ElementKind::Drive {
        drive_identifier(d, layout.identifier_offset())?
    } else {
        None
    };
    Ok(Element {
        kind: layout.kind,
        address: d.u16(0)?,
        full: flags & 0x01 != 0,
        barcode,
        source: if d.bit(9, 7)? { Some(d.u16(10)?) } else { None },
        identifier,
        exception,
    })
}

/// The drive's serial number from the identification descriptor at `at`
/// (absent when the descriptor ends before it: a changer that ignores
/// DVCID). For a T10 vendor ID (identifier type 1: 8 bytes of vendor, 16
/// of product, then the serial) the serial part; for other text
/// identifiers the whole text; binary ones in hex.
fn drive_identifier(d: Bytes<'_>, at: usize) -> Result<Option<String>> {
    if d.len() < at + 4 {
        return Ok(None);
    }
    let code_set = d.u8(at)? & 0x0f;
    let id_type = d.u8(at + 1)? & 0x0f;
    let len = usize::from(d.u8(at + 3)?);
    if at + 4 + len > d.len() {
        return Err(d.error(format_args!("a {len}-byte identifier overruns its {}-byte descriptor", d.len())));
    }
    let id = d.slice(at + 4, len)?;
    Ok(match code_set {
        // ASCII or UTF-8 (printed as ASCII: serial numbers are).
        2 | 3 => match id.get(24..) {
            Some(serial) if id_type == 1 => ascii_field(serial),
            _ => ascii_field(id),
        },
        1 if !id.is_empty() => Some(id.iter().map(|b| format!("{b:02X}")).collect()),
        _ => None,
    })
}

/// An inventory of `elements`, each kind in address order.
pub fn inventory_from(elements: impl IntoIterator<Item = Element>) -> Inventory {
    let mut inv = Inventory::default();
    for e in elements {
        match e.kind {
            ElementKind::Transport => inv.transports.push(e),
            ElementKind::Storage => inv.storage.push(e),
            ElementKind::ImportExport => inv.import_export.push(e),
            ElementKind::Drive => inv.drives.push(e),
        }
    }
    for list in [&mut inv.transports, &mut inv.storage, &mut inv.import_export, &mut inv.drives] {
        list.sort_by_key(|e| e.address);
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header and one page of `kind` with `n` descriptors of `len` bytes.
    fn one_page(kind: u8, flags: u8, len: u16, n: usize) -> Vec<u8> {
        let bytes = usize::from(len) * n;
        let mut v = vec![0, 1, 0, n as u8, 0];
        v.extend_from_slice(&((bytes + 8) as u32).to_be_bytes()[1..]);
        v.extend_from_slice(&[kind, flags]);
        v.extend_from_slice(&len.to_be_bytes());
        v.push(0);
        v.extend_from_slice(&(bytes as u32).to_be_bytes()[1..]);
        for i in 0..n {
            let mut d = vec![0u8; usize::from(len)];
            d[1] = i as u8 + 1;
            v.extend_from_slice(&d);
        }
        v
    }

    #[test]
    fn a_minimal_page_parses() {
        let data = one_page(2, 0, 12, 3);
        let status = parse_element_status(&data, false).unwrap();
        assert_eq!(status.elements.len(), 3);
        assert_eq!(status.elements[2].address, 3);
        assert!(status.elements.iter().all(|e| e.kind == ElementKind::Storage && !e.full));
    }

    #[test]
    fn truncated_element_status_is_an_error() {
        let data = one_page(2, 0x80, 52, 4);
        for cut in [0, 3, 7, 8, 15, 16, 60, data.len() - 1] {
            let err = parse_element_status(&data[..cut], true).unwrap_err().to_string();
            assert!(err.starts_with("SCSI: element status data"), "{cut}: {err}");
        }
        assert_eq!(element_status_len(&data).unwrap(), data.len());
        assert!(element_status_len(&data[..7]).is_err());
    }

    #[test]
    fn inconsistent_pages_are_errors() {
        // Descriptors too short for the volume tag the page header promises.
        let err = parse_element_status(&one_page(2, 0x80, 40, 2), false).unwrap_err().to_string();
        assert!(err.contains("shorter than the 48"), "{err}");
        // A byte count that is not a whole number of descriptors.
        let mut data = one_page(2, 0, 12, 2);
        data[15] = 20;
        data[7] = 28;
        data.truncate(36);
        assert!(parse_element_status(&data, false).unwrap_err().to_string().contains("whole number"));
        // A page byte count past the report's end.
        let mut data = one_page(4, 0, 12, 1);
        data[15] = 13;
        assert!(parse_element_status(&data, false).unwrap_err().to_string().contains("overruns"));
        // An identifier longer than its descriptor.
        let mut data = one_page(4, 0, 20, 1);
        data[16 + 12] = 2;
        data[16 + 15] = 5;
        assert!(parse_element_status(&data, true).unwrap_err().to_string().contains("identifier overruns"));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..300 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = parse_element_status(&data, true);
            let _ = parse_element_address_assignment(&data, ModeForm::Six);
            let _ = parse_element_address_assignment(&data, ModeForm::Ten);
        }
    }

    #[test]
    fn unknown_element_types_are_skipped() {
        let status = parse_element_status(&one_page(7, 0, 12, 2), false).unwrap();
        assert!(status.elements.is_empty());
    }

    #[test]
    fn address_assignment_checks_its_ranges() {
        let mut data = vec![23, 0, 0, 0, 0x1d, 0x12, 0, 1, 0, 1, 0xff, 0xf0, 0, 0x20];
        data.extend_from_slice(&[0; 10]);
        let err = parse_element_address_assignment(&data, ModeForm::Six).unwrap_err().to_string();
        assert!(err.contains("run past"), "{err}");
        let short = [7, 0, 0, 0, 0x1d, 0x02, 0, 1];
        assert!(parse_element_address_assignment(&short, ModeForm::Six).is_err());
    }

    #[test]
    fn inventory_sorts_each_kind_by_address() {
        let e = |kind, address| Element {
            kind,
            address,
            full: false,
            barcode: None,
            source: None,
            identifier: None,
            exception: None,
        };
        let inv = inventory_from([
            e(ElementKind::Storage, 0x1001),
            e(ElementKind::Drive, 0x101),
            e(ElementKind::Storage, 0x1000),
            e(ElementKind::Drive, 0x100),
        ]);
        assert_eq!(inv.storage.iter().map(|e| e.address).collect::<Vec<_>>(), [0x1000, 0x1001]);
        assert_eq!(inv.drives.iter().map(|e| e.address).collect::<Vec<_>>(), [0x100, 0x101]);
        assert!(inv.transports.is_empty() && inv.import_export.is_empty());
    }
}
