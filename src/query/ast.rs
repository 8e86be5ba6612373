//! The query syntax tree.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::format::body::IndexKey;
use crate::model::{Date, DateTime, Decimal};

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// The operator's symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// A literal value in a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Literal {
    /// A quoted string (text, a patient id, a kind, or a bare code).
    Text(String),
    /// An integer or decimal number.
    Number(Decimal),
    /// `YYYY-MM-DD`.
    Date(Date),
    /// RFC 3339.
    DateTime(DateTime),
    /// `system:code`, with the system alias expanded.
    Code(String, String),
    /// `true` / `false`.
    Boolean(bool),
}

/// Writes `s` as a query string literal: only `"` and `\` are escaped (the only escapes
/// the lexer knows), so the text parses back unchanged.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for ch in s.chars() {
        if matches!(ch, '"' | '\\') {
            f.write_str("\\")?;
        }
        write!(f, "{ch}")?;
    }
    f.write_str("\"")
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Text(s) => write_quoted(f, s),
            Literal::Number(n) => write!(f, "{n}"),
            Literal::Date(d) => write!(f, "{d}"),
            Literal::DateTime(d) => write!(f, "{d}"),
            // A system without ':' or '/' (not a URI) only reads back as a code in the
            // bare `system:code` form; a URI system only in the quoted `"system|code"` form.
            Literal::Code(s, c) if !(s.contains(':') || s.contains('/')) || s.contains('|') => write!(f, "{s}:{c}"),
            Literal::Code(s, c) => write_quoted(f, &format!("{s}|{c}")),
            Literal::Boolean(b) => write!(f, "{b}"),
        }
    }
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expr {
    /// `field op literal`
    Cmp(String, CmpOp, Literal),
    /// `field in (a, b, ...)`
    In(String, Vec<Literal>),
    /// Both.
    And(Box<Expr>, Box<Expr>),
    /// Either.
    Or(Box<Expr>, Box<Expr>),
    /// Not.
    Not(Box<Expr>),
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Cmp(n, op, v) => write!(f, "{n} {} {v}", op.symbol()),
            Expr::In(n, vs) => {
                write!(f, "{n} in (")?;
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str(")")
            }
            // Parentheses only where precedence or grouping needs them: a chain of
            // conditions prints flat, so printing never nests deeper than the parser
            // accepts (MAX_DEPTH) and the text parses back to the same tree.
            Expr::And(a, b) => {
                a.write_operand(f, 2)?;
                f.write_str(" and ")?;
                b.write_operand(f, 3)
            }
            Expr::Or(a, b) => {
                a.write_operand(f, 1)?;
                f.write_str(" or ")?;
                b.write_operand(f, 2)
            }
            Expr::Not(a) => {
                f.write_str("not ")?;
                a.write_operand(f, 3)
            }
        }
    }
}

impl Expr {
    /// Binding strength: `or` 1, `and` 2, everything else 3.
    fn precedence(&self) -> u8 {
        match self {
            Expr::Or(..) => 1,
            Expr::And(..) => 2,
            _ => 3,
        }
    }

    /// Writes `self` as an operand that needs at least precedence `min`.
    fn write_operand(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        if self.precedence() < min { write!(f, "({self})") } else { write!(f, "{self}") }
    }
}

impl Expr {
    /// Every field the expression filters on.
    pub fn fields(&self, out: &mut Vec<String>) {
        match self {
            Expr::Cmp(n, _, _) | Expr::In(n, _) => out.push(n.clone()),
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.fields(out);
                b.fields(out);
            }
            Expr::Not(a) => a.fields(out),
        }
    }
}

/// Sort order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The field to sort by.
    pub field: String,
    /// Descending.
    pub descending: bool,
}

/// A whole query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// The filter; `None` matches every document the session may see.
    pub filter: Option<Expr>,
    /// Sort order; default: creation order.
    pub order: Option<Order>,
    /// Page size; default 100, at most 10,000.
    pub limit: Option<usize>,
    /// A cursor from a previous page.
    pub cursor: Option<String>,
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(e) = &self.filter {
            write!(f, "{e}")?;
            sep = " ";
        }
        if let Some(o) = &self.order {
            write!(f, "{sep}order by {} {}", o.field, if o.descending { "desc" } else { "asc" })?;
            sep = " ";
        }
        if let Some(l) = self.limit {
            write!(f, "{sep}limit {l}")?;
        }
        Ok(())
    }
}

/// Fields that are document attributes rather than indexed field values.
pub const ATTRIBUTE_FIELDS: &[&str] = &["kind", "patient", "id", "created", "updated"];

/// A comparable view of a literal or index key: dates and datetimes compare on one
/// time line, integers and decimals numerically.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Comparable {
    /// A number.
    Num(Decimal),
    /// Microseconds since the Unix epoch (dates at 00:00 UTC).
    Time(i64),
    /// Text.
    Text(String),
    /// (system, code).
    Code(String, String),
    /// Boolean.
    Bool(bool),
}

impl Comparable {
    /// From an index key.
    pub fn of_key(k: &IndexKey) -> Comparable {
        match k {
            IndexKey::Code(s, c) => Comparable::Code(s.clone(), c.clone()),
            IndexKey::Text(s) => Comparable::Text(s.clone()),
            IndexKey::Integer(i) => Comparable::Num(Decimal::from(*i)),
            IndexKey::Decimal(d) => Comparable::Num(*d),
            IndexKey::Date(d) => Comparable::Time(i64::from(*d) * 86_400_000_000),
            IndexKey::DateTime(t) => Comparable::Time(*t),
            IndexKey::Boolean(b) => Comparable::Bool(*b),
        }
    }

    /// From a literal.
    pub fn of_literal(l: &Literal) -> Comparable {
        match l {
            Literal::Text(s) => Comparable::Text(s.clone()),
            Literal::Number(n) => Comparable::Num(n.normalize()),
            Literal::Date(d) => Comparable::Time(i64::from(d.days()) * 86_400_000_000),
            Literal::DateTime(t) => Comparable::Time(t.unix_micros()),
            Literal::Code(s, c) => Comparable::Code(s.clone(), c.clone()),
            Literal::Boolean(b) => Comparable::Bool(*b),
        }
    }

    /// Compares a stored value with a literal under `op`; values of different types
    /// never match (except a bare string against a code, which compares the code).
    pub fn matches(&self, op: CmpOp, lit: &Comparable) -> bool {
        use std::cmp::Ordering::*;
        let ord = match (self, lit) {
            (Comparable::Code(_, c), Comparable::Text(t)) => c.cmp(t),
            (a, b) if std::mem::discriminant(a) == std::mem::discriminant(b) => a.cmp(b),
            _ => return op == CmpOp::Ne,
        };
        match op {
            CmpOp::Eq => ord == Equal,
            CmpOp::Ne => ord != Equal,
            CmpOp::Lt => ord == Less,
            CmpOp::Le => ord != Greater,
            CmpOp::Gt => ord == Greater,
            CmpOp::Ge => ord != Less,
        }
    }
}
