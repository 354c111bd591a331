//! [`SgChanger`]: a medium changer through its SCSI generic node
//! (`/dev/sgN`), with the SMC commands: the element address assignment
//! mode page to learn where the elements are, READ ELEMENT STATUS per
//! element type (with barcodes, and the drives' serial numbers when the
//! changer reports them), MOVE MEDIUM and INITIALIZE ELEMENT STATUS.
//!
//! A command that ends in CHECK CONDITION is a [`TapeError::Scsi`] with
//! the sense text; one that ends in UNIT ATTENTION (a door opened, a
//! power-on, a mail slot used) is sent again, as the condition is
//! reported once and the command did not run.

use std::path::Path;
use std::time::Duration;

use super::sg::{CommandError, SgDevice, Transport};
use crate::changer::{Changer, Element, ElementKind, Inventory};
use crate::scsi::{self, ElementAddressAssignment, ElementRange, ModeForm, SenseKey};
use crate::{Result, TapeError};

/// INQUIRY, MODE SENSE.
const SHORT_TIMEOUT: Duration = Duration::from_secs(60);
/// READ ELEMENT STATUS: the changer may scan barcodes first.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const MOVE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// INITIALIZE ELEMENT STATUS checks every element of the library.
const INITIALIZE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// Tries of a command that keeps meeting UNIT ATTENTION.
const TRIES: usize = 3;
/// The first guess of a descriptor's size for READ ELEMENT STATUS'
/// allocation length (12 + 36 volume tag + 4 + a 34-byte identifier, and
/// room to spare); a response that does not fit is asked for again.
const DESCRIPTOR_GUESS: usize = 128;

/// A medium changer.
pub struct SgChanger {
    dev: Box<dyn Transport>,
    /// Vendor and product, for logs.
    model: String,
    /// Where the elements are, once asked.
    layout: Option<ElementAddressAssignment>,
}

/// Whether `e` is ILLEGAL REQUEST for an unsupported command or field,
/// the answer of a changer that lacks an optional feature.
fn unsupported(e: &CommandError) -> bool {
    e.sense().is_some_and(|s| s.key == SenseKey::IllegalRequest && matches!(s.asc, 0x20 | 0x24))
}

impl SgChanger {
    /// Open the changer's SCSI generic node `path` (`/dev/sgN` or a link
    /// to it) and check that it is a medium changer.
    pub fn open(path: &Path) -> Result<SgChanger> {
        SgChanger::with_transport(Box::new(SgDevice::open(path)?))
    }

    fn with_transport(dev: Box<dyn Transport>) -> Result<SgChanger> {
        let mut changer = SgChanger { dev, model: String::new(), layout: None };
        let data = changer.read(&scsi::inquiry(96), 96, SHORT_TIMEOUT, "INQUIRY")?;
        let inquiry = scsi::parse_inquiry(&data)?;
        if inquiry.device_type != scsi::DEVICE_TYPE_CHANGER {
            return Err(TapeError::Invalid(format!(
                "{}: {} {} is not a medium changer (device type {:#04x})",
                changer.dev.path().display(),
                inquiry.vendor,
                inquiry.product,
                inquiry.device_type
            )));
        }
        changer.model = format!("{} {}", inquiry.vendor, inquiry.product);
        Ok(changer)
    }

    /// Make the changer check every element again (and read every
    /// barcode): after cartridges were moved by hand. Can take many
    /// minutes.
    pub fn initialize_element_status(&mut self) -> Result<()> {
        self.layout = None;
        self.retrying(|dev| dev.run(&scsi::initialize_element_status(), INITIALIZE_TIMEOUT))
            .map_err(|e| e.into_error(&self.what("INITIALIZE ELEMENT STATUS")))
    }

    fn what(&self, command: &str) -> String {
        format!("{}: {command}", self.dev.path().display())
    }

    /// Run `command`, again while it meets UNIT ATTENTION.
    fn retrying<T>(
        &self,
        command: impl Fn(&dyn Transport) -> Result<T, CommandError>,
    ) -> Result<T, CommandError> {
        let mut tries = 1;
        loop {
            match command(self.dev.as_ref()) {
                Err(e) if tries < TRIES && e.sense().is_some_and(|s| s.key == SenseKey::UnitAttention) => {
                    tracing::debug!(
                        "{}: {}, trying again",
                        self.dev.path().display(),
                        e.sense().map(|s| s.text()).unwrap_or_default()
                    );
                    tries += 1;
                }
                result => return result,
            }
        }
    }

    fn read(&self, cdb: &[u8], len: usize, timeout: Duration, name: &str) -> Result<Vec<u8>> {
        self.retrying(|dev| dev.read(cdb, len, timeout)).map_err(|e| e.into_error(&self.what(name)))
    }

    /// Where the elements are: MODE SENSE(10), or MODE SENSE(6) for a
    /// changer without it.
    fn layout(&mut self) -> Result<ElementAddressAssignment> {
        if let Some(layout) = self.layout {
            return Ok(layout);
        }
        let page = scsi::PAGE_ELEMENT_ADDRESS_ASSIGNMENT;
        let ten = self.retrying(|dev| dev.read(&scsi::mode_sense10(page, 0, true, 255), 255, SHORT_TIMEOUT));
        let layout = match ten {
            Ok(data) => scsi::parse_element_address_assignment(&data, ModeForm::Ten)?,
            Err(e) if unsupported(&e) => {
                let data =
                    self.read(&scsi::mode_sense6(page, 0, true, 255), 255, SHORT_TIMEOUT, "MODE SENSE(6)")?;
                scsi::parse_element_address_assignment(&data, ModeForm::Six)?
            }
            Err(e) => return Err(e.into_error(&self.what("MODE SENSE(10)"))),
        };
        self.layout = Some(layout);
        Ok(layout)
    }

    /// READ ELEMENT STATUS of `count` elements of `kind` from `start`, the
    /// whole response (asked for again with room enough if the first
    /// allocation length was too small).
    fn element_status(
        &self,
        kind: ElementKind,
        start: u16,
        count: u16,
        dvcid: bool,
    ) -> Result<Vec<u8>, CommandError> {
        let mut len = (16 + usize::from(count) * DESCRIPTOR_GUESS).min(0x00ff_ffff);
        loop {
            let cdb = scsi::read_element_status(Some(kind), start, count, true, dvcid, len as u32);
            let data = self.retrying(|dev| dev.read(&cdb, len, STATUS_TIMEOUT))?;
            let whole = scsi::element_status_len(&data).map_err(CommandError::Failed)?;
            if whole <= data.len() || whole > 0x00ff_ffff || len >= whole {
                // Complete, or as much as can be had (the parser says
                // which).
                return Ok(data);
            }
            len = whole;
        }
    }

    /// Every element of `kind` in `range`, in as many READ ELEMENT STATUS
    /// commands as the changer needs (some report fewer elements than
    /// asked for). Drives are asked for their identifiers (DVCID), unless
    /// the changer refuses the bit.
    fn elements(&self, kind: ElementKind, range: ElementRange) -> Result<Vec<Element>> {
        let end = u32::from(range.first) + u32::from(range.count);
        let mut next = u32::from(range.first);
        let mut dvcid = kind == ElementKind::Drive;
        let mut elements = Vec::new();
        while next < end {
            let (start, count) = (next as u16, (end - next) as u16);
            let data = match self.element_status(kind, start, count, dvcid) {
                Ok(data) => data,
                Err(e) if dvcid && unsupported(&e) => {
                    dvcid = false;
                    continue;
                }
                Err(e) => {
                    return Err(
                        e.into_error(&self.what(&format!("READ ELEMENT STATUS {kind:?} from {start:#06x}")))
                    );
                }
            };
            let status = scsi::parse_element_status(&data, dvcid)?;
            let Some(last) = status.elements.iter().map(|e| u32::from(e.address)).max() else { break };
            elements.extend(
                status
                    .elements
                    .into_iter()
                    .filter(|e| e.kind == kind && (next..end).contains(&u32::from(e.address))),
            );
            if last < next {
                break;
            }
            next = last + 1;
        }
        Ok(elements)
    }
}

impl Changer for SgChanger {
    fn name(&self) -> String {
        if self.model.is_empty() {
            self.dev.path().display().to_string()
        } else {
            format!("{} ({})", self.dev.path().display(), self.model)
        }
    }

    fn inventory(&mut self) -> Result<Inventory> {
        let layout = self.layout()?;
        let mut elements = Vec::new();
        for kind in
            [ElementKind::Transport, ElementKind::Storage, ElementKind::ImportExport, ElementKind::Drive]
        {
            let range = layout.range(kind);
            if range.count > 0 {
                elements.extend(self.elements(kind, range)?);
            }
        }
        Ok(scsi::inventory_from(elements))
    }

    fn move_medium(&mut self, from: u16, to: u16) -> Result<()> {
        let layout = self.layout()?;
        // The first transport, or 0: the changer's default.
        let transport = if layout.transports.count > 0 { layout.transports.first } else { 0 };
        let cdb = scsi::move_medium(transport, from, to);
        self.retrying(|dev| dev.run(&cdb, MOVE_TIMEOUT))
            .map_err(|e| e.into_error(&self.what(&format!("MOVE MEDIUM from {from:#06x} to {to:#06x}"))))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::scsi::parse_sense;
    use crate::scsi::testdata::fixture;

    /// Library B of the fixtures behind a fake SCSI generic device: it
    /// refuses MODE SENSE(10) and DVCID, reports at most `per_answer`
    /// elements per READ ELEMENT STATUS, and answers UNIT ATTENTION
    /// `attentions` times before running the next commands. It logs every
    /// CDB.
    #[derive(Clone)]
    struct FakeLibrary {
        path: PathBuf,
        inquiry: &'static str,
        per_answer: usize,
        attentions: Arc<AtomicUsize>,
        cdbs: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    fn fake(per_answer: usize) -> FakeLibrary {
        FakeLibrary {
            path: PathBuf::from("fake"),
            inquiry: "inquiry_changer.hex",
            per_answer,
            attentions: Arc::default(),
            cdbs: Arc::default(),
        }
    }

    fn check(sense: &[u8]) -> CommandError {
        CommandError::Check(parse_sense(sense).unwrap())
    }

    fn fixed_sense(key: u8, asc: u8, ascq: u8) -> Vec<u8> {
        vec![0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0]
    }

    /// Library B's layout: transport 0001h, storage 0400h x6, mail slots
    /// 000Ah x2, drives 01F4h x2 (MODE SENSE(6), DBD).
    fn layout6() -> Vec<u8> {
        let mut v = vec![23, 0, 0, 0, 0x1d, 0x12];
        for (first, count) in [(0x0001u16, 1u16), (0x0400, 6), (0x000a, 2), (0x01f4, 2)] {
            v.extend_from_slice(&first.to_be_bytes());
            v.extend_from_slice(&count.to_be_bytes());
        }
        v.extend_from_slice(&[0, 0]);
        v
    }

    /// READ ELEMENT STATUS data of `descriptors` (all `len` long) on a
    /// page of type `kind` with page flags `flags`.
    fn frame(kind: u8, flags: u8, len: usize, descriptors: &[&[u8]]) -> Vec<u8> {
        let bytes = (len * descriptors.len()) as u32;
        let first = descriptors.first().map_or([0, 0], |d| [d[0], d[1]]);
        let mut v = vec![first[0], first[1], 0, descriptors.len() as u8, 0];
        v.extend_from_slice(&(bytes + 8).to_be_bytes()[1..]);
        v.extend_from_slice(&[kind, flags, 0, len as u8, 0]);
        v.extend_from_slice(&bytes.to_be_bytes()[1..]);
        descriptors.iter().for_each(|d| v.extend_from_slice(d));
        v
    }

    impl FakeLibrary {
        fn command(&self, cdb: &[u8]) -> Result<(), CommandError> {
            self.cdbs.lock().unwrap().push(cdb.to_vec());
            let pending = self.attentions.load(Ordering::Relaxed);
            if pending > 0 {
                self.attentions.store(pending - 1, Ordering::Relaxed);
                return Err(check(&fixed_sense(0x06, 0x28, 0x01)));
            }
            Ok(())
        }

        fn element_status(&self, cdb: &[u8]) -> Result<Vec<u8>, CommandError> {
            let (kind, dvcid) = (cdb[1] & 0x0f, cdb[6] & 1 != 0);
            let start = u16::from_be_bytes([cdb[2], cdb[3]]);
            let count = usize::from(u16::from_be_bytes([cdb[4], cdb[5]]));
            assert_eq!(cdb[1] & 0x10, 0x10, "VolTag is always asked for");
            if dvcid {
                return Err(check(&fixed_sense(0x05, 0x24, 0x00)));
            }
            let data = match kind {
                1 => return Ok(frame(1, 0, 12, &[&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])),
                2 => fixture("res_lib_b_storage.hex"),
                3 => fixture("res_lib_b_import_export.hex"),
                4 => fixture("res_lib_b_drives.hex"),
                _ => panic!("element type {kind}"),
            };
            let (flags, len) = (data[9], usize::from(data[11]));
            let picked: Vec<&[u8]> = data[16..]
                .chunks(len)
                .filter(|d| u16::from_be_bytes([d[0], d[1]]) >= start)
                .take(count.min(self.per_answer))
                .collect();
            Ok(frame(kind, flags, len, &picked))
        }

        fn log(&self) -> Vec<Vec<u8>> {
            self.cdbs.lock().unwrap().clone()
        }
    }

    impl Transport for FakeLibrary {
        fn path(&self) -> &Path {
            &self.path
        }

        fn read(&self, cdb: &[u8], len: usize, _: Duration) -> Result<Vec<u8>, CommandError> {
            self.command(cdb)?;
            let mut data = match cdb[0] {
                0x12 => fixture(self.inquiry),
                0x5a => return Err(check(&fixed_sense(0x05, 0x20, 0x00))),
                0x1a => layout6(),
                0xb8 => self.element_status(cdb)?,
                op => panic!("unexpected command {op:#04x}"),
            };
            data.truncate(len);
            Ok(data)
        }

        fn run(&self, cdb: &[u8], _: Duration) -> Result<(), CommandError> {
            self.command(cdb)?;
            match cdb[0] {
                // Slot 0401h is empty.
                0xa5 if cdb[4..6] == [0x04, 0x01] => Err(check(&fixture("sense_changer_source_empty.hex"))),
                0xa5 | 0x07 => Ok(()),
                op => panic!("unexpected command {op:#04x}"),
            }
        }
    }

    fn changer(fake: &FakeLibrary) -> SgChanger {
        SgChanger::with_transport(Box::new(fake.clone())).unwrap()
    }

    #[test]
    fn open_refuses_what_is_not_a_scsi_generic_device() {
        let err = SgChanger::open(Path::new("/dev/null")).err().unwrap().to_string();
        assert!(err.starts_with("/dev/null: not a SCSI generic device"), "{err}");
    }

    #[test]
    fn open_checks_the_device_type() {
        assert_eq!(changer(&fake(100)).name(), "fake (IBM 3573-TL)");
        let drive = FakeLibrary { inquiry: "inquiry_tape_drive.hex", ..fake(100) };
        let err = SgChanger::with_transport(Box::new(drive)).err().unwrap().to_string();
        assert_eq!(err, "fake: IBM ULT3580-HH8 is not a medium changer (device type 0x01)");
    }

    #[test]
    fn inventory_in_several_answers_without_dvcid_or_mode_sense_10() {
        let lib = fake(4);
        let mut c = changer(&lib);
        let inv = c.inventory().unwrap();
        let barcodes = |list: &[Element]| list.iter().map(|e| e.barcode.clone()).collect::<Vec<_>>();
        assert_eq!(
            barcodes(&inv.storage),
            [Some("B10001L8"), None, Some("B10002L8"), Some("B10003L8"), None, Some("CLNU01CU")]
                .map(|b| b.map(String::from))
        );
        assert_eq!(
            inv.storage.iter().map(|e| e.address).collect::<Vec<_>>(),
            (0x0400..0x0406).collect::<Vec<_>>()
        );
        assert_eq!(barcodes(&inv.drives), [Some("B10004L8".to_string()), None]);
        assert_eq!(inv.drives[0].source, Some(0x0401));
        assert_eq!(
            inv.import_export.iter().map(|e| (e.address, e.full)).collect::<Vec<_>>(),
            [(0x0a, true), (0x0b, false)]
        );
        assert_eq!(inv.transports.len(), 1);

        let res: Vec<_> = lib.log().into_iter().filter(|cdb| cdb[0] == 0xb8).collect();
        let asked = |cdb: &Vec<u8>| {
            (
                cdb[1] & 0x0f,
                u16::from_be_bytes([cdb[2], cdb[3]]),
                u16::from_be_bytes([cdb[4], cdb[5]]),
                cdb[6] & 1,
            )
        };
        assert_eq!(
            res.iter().map(asked).collect::<Vec<_>>(),
            [
                (1, 0x0001, 1, 0),
                // Four storage elements per answer: the rest is asked for.
                (2, 0x0400, 6, 0),
                (2, 0x0404, 2, 0),
                (3, 0x000a, 2, 0),
                // DVCID refused (ILLEGAL REQUEST, invalid field in CDB):
                // asked again without.
                (4, 0x01f4, 2, 1),
                (4, 0x01f4, 2, 0),
            ]
        );
        // MODE SENSE(10) refused, MODE SENSE(6) asked, once: the layout is
        // kept for the next inventory.
        c.inventory().unwrap();
        let modes: Vec<u8> =
            lib.log().iter().map(|cdb| cdb[0]).filter(|op| [0x5a, 0x1a].contains(op)).collect();
        assert_eq!(modes, [0x5a, 0x1a]);
    }

    #[test]
    fn moves_use_the_first_transport_and_survive_a_unit_attention() {
        let lib = fake(100);
        let mut c = changer(&lib);
        lib.attentions.store(2, Ordering::Relaxed);
        c.load("B10002L8", 1).unwrap();
        // Drive 0 holds B10004L8, from slot 0401h: unloading puts it back.
        assert_eq!(c.unload(0).unwrap().as_deref(), Some("B10004L8"));
        let moves: Vec<_> = lib.log().into_iter().filter(|cdb| cdb[0] == 0xa5).collect();
        assert_eq!(
            moves,
            [
                scsi::move_medium(0x0001, 0x0402, 0x01f5).to_vec(),
                scsi::move_medium(0x0001, 0x01f4, 0x0401).to_vec()
            ]
        );
    }

    #[test]
    fn check_conditions_carry_the_sense_text() {
        let lib = fake(100);
        let mut c = changer(&lib);
        let err = c.move_medium(0x0401, 0x0404).unwrap_err().to_string();
        assert_eq!(
            err,
            "SCSI: fake: MOVE MEDIUM from 0x0401 to 0x0404: ILLEGAL REQUEST: medium source element empty (3Bh/0Eh)"
        );
        // A unit attention that does not go away is reported.
        lib.attentions.store(TRIES, Ordering::Relaxed);
        let err = c.initialize_element_status().unwrap_err().to_string();
        assert_eq!(
            err,
            "SCSI: fake: INITIALIZE ELEMENT STATUS: UNIT ATTENTION: import or export element accessed (28h/01h)"
        );
        c.initialize_element_status().unwrap();
    }
}
