//! The pure core: no I/O, no clock (the caller passes `now`), no other layer imported.

pub mod announce;
pub mod decide;
pub mod integrity;
pub mod mediatype;
pub mod message;
pub mod relpath;
pub mod select;
pub mod time;
pub mod topic;
