//! The data model: documents, typed values, sensitivity labels and the schema that
//! assigns a label to each field of each kind.

pub mod document;
pub mod json;
pub mod label;
pub mod schema;
pub mod value;

pub use document::{Document, DocumentId, Field, Kind, NewDocument};
pub use label::{Label, LabelSet};
pub use schema::{FieldSchema, KindSchema, Labeler, Schema};
pub use value::{AttachmentRef, Coding, Date, DateTime, Decimal, Value};
