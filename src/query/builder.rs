//! The typed query builder.

use super::ast::{CmpOp, Expr, Literal, Order, Query};
use crate::model::value::expand_system;

/// Builds a [`Query`] in Rust; every call adds a condition joined with `and`.
///
/// ```
/// use chartvault::query::{QueryBuilder, Literal};
/// use chartvault::Date;
/// let q = QueryBuilder::new()
///     .kind("Observation")
///     .patient("MRN-7")
///     .code("loinc", "4548-4")
///     .cmp("effective", chartvault::query::CmpOp::Ge, Literal::Date(Date::parse("2024-01-01").unwrap()))
///     .order_by("effective", true)
///     .limit(20)
///     .build();
/// assert_eq!(q, chartvault::query::parse(&q.to_string()).unwrap());
/// ```
#[derive(Debug, Clone, Default)]
pub struct QueryBuilder {
    q: Query,
}

impl QueryBuilder {
    /// An empty query (everything the session may see).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a condition with `and`.
    pub fn filter(mut self, e: Expr) -> Self {
        self.q.filter = Some(match self.q.filter.take() {
            Some(f) => Expr::And(Box::new(f), Box::new(e)),
            None => e,
        });
        self
    }

    /// Adds an alternative with `or` to everything so far.
    pub fn or(mut self, e: Expr) -> Self {
        self.q.filter = Some(match self.q.filter.take() {
            Some(f) => Expr::Or(Box::new(f), Box::new(e)),
            None => e,
        });
        self
    }

    /// `kind = k`.
    pub fn kind(self, k: &str) -> Self {
        self.filter(Expr::Cmp("kind".into(), CmpOp::Eq, Literal::Text(k.into())))
    }

    /// `patient = p` (a patient's chart).
    pub fn patient(self, p: &str) -> Self {
        self.filter(Expr::Cmp("patient".into(), CmpOp::Eq, Literal::Text(p.into())))
    }

    /// `code = system:code`.
    pub fn code(self, system: &str, code: &str) -> Self {
        self.filter(Expr::Cmp("code".into(), CmpOp::Eq, Literal::Code(expand_system(system).into(), code.into())))
    }

    /// `field op value`.
    pub fn cmp(self, field: &str, op: CmpOp, v: Literal) -> Self {
        self.filter(Expr::Cmp(field.into(), op, v))
    }

    /// `lo <= field <= hi`.
    pub fn between(self, field: &str, lo: Literal, hi: Literal) -> Self {
        self.cmp(field, CmpOp::Ge, lo).cmp(field, CmpOp::Le, hi)
    }

    /// `field in (values)`.
    pub fn any_of(self, field: &str, values: Vec<Literal>) -> Self {
        self.filter(Expr::In(field.into(), values))
    }

    /// Sort by `field`.
    pub fn order_by(mut self, field: &str, descending: bool) -> Self {
        self.q.order = Some(Order { field: field.into(), descending });
        self
    }

    /// Page size.
    pub fn limit(mut self, n: usize) -> Self {
        self.q.limit = Some(n);
        self
    }

    /// Continue after a cursor from a previous page.
    pub fn after(mut self, cursor: &str) -> Self {
        self.q.cursor = Some(cursor.into());
        self
    }

    /// The query.
    pub fn build(self) -> Query {
        self.q
    }
}
