//! The data tree on disk: files written to a temporary name, verified, renamed; the
//! checksum cache in xattrs; channel products' sidecars; retention of hour directories.

pub mod retention;
pub mod sidecar;
pub mod sweep;
mod tree;

pub use tree::{
    is_local_trouble, temp_name, CommitError, Store, TempFile, KNOWN_DIRS_CAPACITY, TEMP_PREFIX,
};
