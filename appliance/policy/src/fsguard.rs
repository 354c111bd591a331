//! Special files in a source handler's granted directory. Opening a FIFO
//! blocks until someone writes to it, in the host, where the epoch cannot
//! interrupt it, and opening a device may act on it (rewind a tape); so a
//! guest may open only regular files and directories. `open-at` is
//! replaced in the source linker: it looks at what the path names first
//! (following symlinks as the open would) and refuses anything else with
//! `access`, then checks what it opened again (a path swapped between the
//! look and the open is closed and refused, unless the swap put a FIFO
//! there, whose open still blocks: that needs someone who can write the
//! granted directory and wins the race).

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p2::bindings::sync::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, ErrorCode, Host, HostDescriptor, OpenFlags, PathFlags,
};

/// The `wasi:filesystem/types` version whose `open-at` is replaced (the
/// one wasmtime-wasi serves; guests built for an earlier 0.2 match it).
const TYPES: &str = "wasi:filesystem/types@0.2.12";

/// Whether a guest may open what has this type.
fn openable(ty: DescriptorType) -> bool {
    matches!(ty, DescriptorType::RegularFile | DescriptorType::Directory)
}

/// Replace `open-at` in `linker` with one that refuses special files (any
/// store whose data is a WASI view: the sandbox's source linker).
pub fn refuse_special_files<T: WasiView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.instance(TYPES)?.func_wrap(
        "[method]descriptor.open-at",
        |mut store,
         (dir, path_flags, path, oflags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )|
         -> wasmtime::Result<(Result<Resource<Descriptor>, ErrorCode>,)> {
            let mut fs = store.data_mut().filesystem();
            let looked =
                HostDescriptor::stat_at(&mut fs, Resource::new_borrow(dir.rep()), path_flags, path.clone());
            if let Ok(stat) = &looked
                && !openable(stat.type_)
            {
                return Ok((Err(refused(&path, stat.type_)),));
            }
            let opened = match HostDescriptor::open_at(&mut fs, dir, path_flags, path.clone(), oflags, flags)
            {
                Ok(fd) => fd,
                Err(e) => return Ok((Err(fs.convert_error_code(e)?),)),
            };
            match HostDescriptor::get_type(&mut fs, Resource::new_borrow(opened.rep())) {
                Ok(ty) if openable(ty) => Ok((Ok(opened),)),
                Ok(ty) => {
                    HostDescriptor::drop(&mut fs, opened)?;
                    Ok((Err(refused(&path, ty)),))
                }
                Err(e) => {
                    HostDescriptor::drop(&mut fs, opened)?;
                    Ok((Err(fs.convert_error_code(e)?),))
                }
            }
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn refused(path: &str, ty: DescriptorType) -> ErrorCode {
    tracing::warn!(
        path = %crate::clip(path),
        "source policy: refused to open a {ty:?} in the granted directory (only regular files and \
         directories may be opened)"
    );
    ErrorCode::Access
}
