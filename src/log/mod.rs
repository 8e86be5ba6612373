//! The append-only log: the storage trait every byte goes through, the frame
//! writer, and the verifying scan used at open (recovery) and by `verify`.

pub mod fault;
pub mod scan;
pub mod storage;
pub mod writer;

pub use scan::{ScanOutcome, ScannedFrame};
pub use storage::{FileStorage, Region, Storage};
pub use writer::LogWriter;
