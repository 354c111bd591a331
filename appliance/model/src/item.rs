//! What a source handler yields and is handed back: the kinds of item the
//! `cairn:policy` source world knows. The policy host (`policy::ItemKind`)
//! and the engine's item streams (`engine::items::ItemKind`) use this one
//! type.

/// A file (its data follows), a directory or a symbolic link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    File,
    Directory,
    Symlink,
}
