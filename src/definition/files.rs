//! The loader's view of files: the disk, or the stages compiled into the binary
//! ([`super::embedded`]), chosen by the path. Everything in `loader.rs` reads through here,
//! so an embedded stage loads, lints and digests exactly like one on disk.

use std::io;
use std::path::{Path, PathBuf};

use super::embedded;

pub(super) fn read(path: &Path) -> io::Result<Vec<u8>> {
    if embedded::contains(path) {
        return embedded::read(path)
            .map(|t| t.as_bytes().to_vec())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "not a file of the embedded stages")
            });
    }
    use crate::safe_fs::{read_bounded, Kind, Links};
    read_bounded(path, Kind::DEFINITION, Links::Follow).map_err(|e| match e.why {
        crate::safe_fs::ReadWhy::Io(e) => e,
        why => io::Error::other(why.to_string()),
    })
}

pub(super) fn read_to_string(path: &Path) -> io::Result<String> {
    let bytes = read(path)?;
    String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub(super) fn is_file(path: &Path) -> bool {
    if embedded::contains(path) {
        return embedded::read(path).is_some();
    }
    path.is_file()
}

pub(super) fn is_dir(path: &Path) -> bool {
    if embedded::contains(path) {
        return embedded::is_dir(path);
    }
    path.is_dir()
}

/// The entries of a directory (unsorted for the disk, as `read_dir` gives them).
pub(super) fn read_dir(path: &Path) -> io::Result<Vec<PathBuf>> {
    if embedded::contains(path) {
        return embedded::list(path).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "not a directory of the embedded stages",
            )
        });
    }
    Ok(std::fs::read_dir(path)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect())
}
