//! Queries: a typed builder, a small text language, and an executor that answers
//! from the in-memory indexes, applies the session's policy before anything is
//! counted or paged, and decrypts only the documents it returns.
//!
//! The grammar is in `docs/QUERY.md`.

pub mod ast;
pub mod builder;
pub mod exec;
pub mod parse;

pub use ast::{CmpOp, Expr, Literal, Order, Query};
pub use builder::QueryBuilder;
pub use exec::QueryResult;
pub use parse::parse;
