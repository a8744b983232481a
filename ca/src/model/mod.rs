//! The bottom layer: values every other layer speaks in — serial numbers, revocation reasons,
//! audit entries and their chain hash, the encodings and time formats Herald writes, and the
//! escaping of text that came from outside. Pure: no I/O, no store, no HTTP.

pub(crate) mod audit;
pub(crate) mod encoding;
pub(crate) mod revocation;
pub(crate) mod serial;
pub(crate) mod text;
pub(crate) mod time;
