//! The text query language: a hand-written lexer and recursive-descent parser.
//!
//! ```text
//! query      = [expr] ["order" "by" field ["asc" | "desc"]] ["limit" integer]
//! expr       = and_expr {"or" and_expr}
//! and_expr   = not_expr {"and" not_expr}
//! not_expr   = "not" not_expr | "(" expr ")" | field op value | field "in" "(" value {"," value} ")"
//! op         = "=" | "!=" | "<" | "<=" | ">" | ">="
//! value      = string | word | number | date | datetime | code | "true" | "false"
//! code       = system ":" code      (loinc:4548-4, icd10cm:E11.9, snomed:44054006)
//! ```
//! Keywords are case-insensitive. A syntax error names the character position and
//! what was expected there.

use super::ast::{CmpOp, Expr, Literal, Order, Query};
use crate::error::{Error, Result};
use crate::model::value::expand_system;
use crate::model::{Date, DateTime};

/// Longest query text accepted.
pub const MAX_QUERY_LEN: usize = 16 * 1024;
/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Date(String),
    Code(String, String),
    Op(CmpOp),
    LParen,
    RParen,
    Comma,
    End,
}

struct Lexer<'a> {
    chars: Vec<(usize, char)>,
    i: usize,
    src: &'a str,
}

fn err(position: usize, expected: &str) -> Error {
    Error::QuerySyntax { position, expected: expected.to_string() }
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer { chars: src.char_indices().collect(), i: 0, src }
    }

    fn peek_char(&self) -> Option<char> {
        self.chars.get(self.i).map(|c| c.1)
    }

    /// Returns (token, character position).
    fn next(&mut self) -> Result<(Tok, usize)> {
        while self.peek_char().is_some_and(char::is_whitespace) {
            self.i += 1;
        }
        let pos = self.i;
        let Some(c) = self.peek_char() else { return Ok((Tok::End, pos)) };
        let tok = match c {
            '(' => {
                self.i += 1;
                Tok::LParen
            }
            ')' => {
                self.i += 1;
                Tok::RParen
            }
            ',' => {
                self.i += 1;
                Tok::Comma
            }
            '=' => {
                self.i += 1;
                Tok::Op(CmpOp::Eq)
            }
            '!' | '<' | '>' => {
                self.i += 1;
                let eq = self.peek_char() == Some('=');
                if eq {
                    self.i += 1;
                }
                match (c, eq) {
                    ('!', true) => Tok::Op(CmpOp::Ne),
                    ('!', false) => return Err(err(pos, "'!=' (a lone '!' is not an operator)")),
                    ('<', true) => Tok::Op(CmpOp::Le),
                    ('<', false) => Tok::Op(CmpOp::Lt),
                    ('>', true) => Tok::Op(CmpOp::Ge),
                    _ => Tok::Op(CmpOp::Gt),
                }
            }
            '"' => {
                self.i += 1;
                let mut s = String::new();
                loop {
                    match self.peek_char() {
                        None => return Err(err(self.i, "a closing '\"'")),
                        Some('"') => {
                            self.i += 1;
                            break;
                        }
                        Some('\\') => {
                            self.i += 1;
                            match self.peek_char() {
                                Some(e @ ('"' | '\\')) => {
                                    s.push(e);
                                    self.i += 1;
                                }
                                _ => return Err(err(self.i, "'\\\"' or '\\\\' after a backslash")),
                            }
                        }
                        Some(ch) => {
                            s.push(ch);
                            self.i += 1;
                        }
                    }
                }
                Tok::Str(s)
            }
            c if c.is_ascii_digit() || c == '-' => {
                let s = self.take_while(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '.' | ':' | '+'));
                if s.len() >= 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-' {
                    Tok::Date(s)
                } else if s.strip_prefix('-').unwrap_or(&s).chars().all(|ch| ch.is_ascii_digit() || ch == '.')
                    && s != "-"
                {
                    Tok::Num(s)
                } else {
                    return Err(err(pos, "a number, a date (YYYY-MM-DD) or a datetime (RFC 3339)"));
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let s = self.take_while(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'));
                if self.peek_char() == Some(':') {
                    self.i += 1;
                    let code = self.take_while(|ch| !ch.is_whitespace() && !matches!(ch, '(' | ')' | ','));
                    if code.is_empty() {
                        return Err(err(self.i, "a code after 'system:'"));
                    }
                    Tok::Code(s, code)
                } else {
                    Tok::Ident(s)
                }
            }
            _ => return Err(err(pos, "a field name, a value, an operator or a parenthesis")),
        };
        Ok((tok, pos))
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> String {
        let start = self.chars.get(self.i).map(|c| c.0).unwrap_or(self.src.len());
        while self.peek_char().is_some_and(&f) {
            self.i += 1;
        }
        let end = self.chars.get(self.i).map(|c| c.0).unwrap_or(self.src.len());
        self.src[start..end].to_string()
    }
}

struct Parser<'a> {
    lex: Lexer<'a>,
    tok: Tok,
    pos: usize,
    depth: usize,
}

fn is_kw(t: &Tok, kw: &str) -> bool {
    matches!(t, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
}

const KEYWORDS: &[&str] = &["and", "or", "not", "in", "order", "by", "asc", "desc", "limit"];

impl Parser<'_> {
    fn bump(&mut self) -> Result<()> {
        let (t, p) = self.lex.next()?;
        self.tok = t;
        self.pos = p;
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr> {
        let mut left = self.and_expr()?;
        while is_kw(&self.tok, "or") {
            self.bump()?;
            left = Expr::Or(Box::new(left), Box::new(self.and_expr()?));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr> {
        let mut left = self.not_expr()?;
        while is_kw(&self.tok, "and") {
            self.bump()?;
            left = Expr::And(Box::new(left), Box::new(self.not_expr()?));
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> Result<Expr> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(self.pos, "less nesting (at most 64 levels)"));
        }
        let r = self.not_expr_inner();
        self.depth -= 1;
        r
    }

    fn not_expr_inner(&mut self) -> Result<Expr> {
        if is_kw(&self.tok, "not") {
            self.bump()?;
            return Ok(Expr::Not(Box::new(self.not_expr()?)));
        }
        if self.tok == Tok::LParen {
            self.bump()?;
            let e = self.expr()?;
            if self.tok != Tok::RParen {
                return Err(err(self.pos, "')' or 'and' / 'or'"));
            }
            self.bump()?;
            return Ok(e);
        }
        let field = match &self.tok {
            Tok::Ident(s) if !KEYWORDS.iter().any(|k| s.eq_ignore_ascii_case(k)) => s.clone(),
            _ => return Err(err(self.pos, "a field name, 'not' or '('")),
        };
        self.bump()?;
        if is_kw(&self.tok, "in") {
            self.bump()?;
            if self.tok != Tok::LParen {
                return Err(err(self.pos, "'(' after 'in'"));
            }
            self.bump()?;
            let mut vals = vec![self.value()?];
            while self.tok == Tok::Comma {
                self.bump()?;
                vals.push(self.value()?);
            }
            if self.tok != Tok::RParen {
                return Err(err(self.pos, "',' or ')' in the 'in' list"));
            }
            self.bump()?;
            return Ok(Expr::In(field, vals));
        }
        let Tok::Op(op) = self.tok else {
            return Err(err(self.pos, "an operator (=, !=, <, <=, >, >=) or 'in'"));
        };
        self.bump()?;
        Ok(Expr::Cmp(field, op, self.value()?))
    }

    fn value(&mut self) -> Result<Literal> {
        let pos = self.pos;
        let v = match &self.tok {
            Tok::Str(s) => match s.split_once('|') {
                Some((sys, code)) if (sys.contains(':') || sys.contains('/')) && !code.is_empty() => {
                    Literal::Code(sys.to_string(), code.to_string())
                }
                _ => Literal::Text(s.clone()),
            },
            Tok::Num(n) => Literal::Number(n.parse().map_err(|_| err(pos, "a valid number"))?),
            Tok::Date(d) if d.len() == 10 => {
                Literal::Date(Date::parse(d).map_err(|_| err(pos, "a valid date YYYY-MM-DD"))?)
            }
            Tok::Date(d) => Literal::DateTime(
                DateTime::parse(d).map_err(|_| err(pos, "a valid RFC 3339 datetime such as 2024-01-01T00:00:00Z"))?,
            ),
            Tok::Code(s, c) => Literal::Code(expand_system(s).to_string(), c.clone()),
            Tok::Ident(s) if s.eq_ignore_ascii_case("true") => Literal::Boolean(true),
            Tok::Ident(s) if s.eq_ignore_ascii_case("false") => Literal::Boolean(false),
            // A bare word is text: `kind = Observation`.
            Tok::Ident(s) if !KEYWORDS.iter().any(|k| s.eq_ignore_ascii_case(k)) => Literal::Text(s.clone()),
            _ => return Err(err(pos, "a value: \"string\", number, date, datetime, system:code, true or false")),
        };
        self.bump()?;
        Ok(v)
    }
}

/// Parses a query.
///
/// ```
/// let q = chartvault::query::parse(
///     "kind = Observation and code = loinc:4548-4 and effective >= 2024-01-01 order by effective desc limit 20",
/// ).unwrap();
/// assert_eq!(q.limit, Some(20));
/// let e = chartvault::query::parse("kind = ").unwrap_err();
/// assert!(e.to_string().contains("position 7"));
/// ```
pub fn parse(src: &str) -> Result<Query> {
    if src.len() > MAX_QUERY_LEN {
        return Err(Error::TooLarge { what: "query", size: src.len() as u64, limit: MAX_QUERY_LEN as u64 });
    }
    let mut p = Parser { lex: Lexer::new(src), tok: Tok::End, pos: 0, depth: 0 };
    p.bump()?;
    let mut q = Query::default();
    if p.tok != Tok::End && !is_kw(&p.tok, "order") && !is_kw(&p.tok, "limit") {
        q.filter = Some(p.expr()?);
    }
    if is_kw(&p.tok, "order") {
        p.bump()?;
        if !is_kw(&p.tok, "by") {
            return Err(err(p.pos, "'by' after 'order'"));
        }
        p.bump()?;
        let field = match &p.tok {
            Tok::Ident(s) if !KEYWORDS.iter().any(|k| s.eq_ignore_ascii_case(k)) => s.clone(),
            _ => return Err(err(p.pos, "a field name after 'order by'")),
        };
        p.bump()?;
        let mut descending = false;
        if is_kw(&p.tok, "desc") {
            descending = true;
            p.bump()?;
        } else if is_kw(&p.tok, "asc") {
            p.bump()?;
        }
        q.order = Some(Order { field, descending });
    }
    if is_kw(&p.tok, "limit") {
        p.bump()?;
        let Tok::Num(n) = &p.tok else { return Err(err(p.pos, "a whole number after 'limit'")) };
        q.limit = Some(n.parse().map_err(|_| err(p.pos, "a whole number after 'limit'"))?);
        p.bump()?;
    }
    if p.tok != Tok::End {
        return Err(err(p.pos, "'and', 'or', 'order by', 'limit' or the end of the query"));
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_issue_example() {
        let q = parse("kind = Observation and patient = \"MRN-7\" and code = loinc:4548-4 and effective >= 2024-01-01 order by effective desc limit 20").unwrap();
        assert_eq!(q.limit, Some(20));
        assert!(q.order.as_ref().unwrap().descending);
        let mut f = Vec::new();
        q.filter.unwrap().fields(&mut f);
        assert_eq!(f, ["kind", "patient", "code", "effective"]);
    }

    #[test]
    fn precedence_and_in() {
        let q = parse("not a = 1 or b in (1, 2.5, \"x\") and (c < 2024-01-01T00:00:00Z)").unwrap();
        assert!(matches!(q.filter, Some(Expr::Or(_, _))));
    }

    #[test]
    fn errors_name_position_and_expectation() {
        for (src, pos) in [
            ("kind =", 6),
            ("(a = 1", 6),
            ("a = 1 b", 6),
            ("a in 1", 5),
            ("limit x", 6),
            ("a = \"x", 6),
            ("a ! 1", 2),
            ("order a", 6),
        ] {
            match parse(src) {
                Err(Error::QuerySyntax { position, .. }) => assert_eq!(position, pos, "{src}"),
                other => panic!("{src}: {other:?}"),
            }
        }
        assert!(parse(&"(".repeat(100)).is_err());
        assert!(parse("a = 2024-13-01").is_err());
    }
}
