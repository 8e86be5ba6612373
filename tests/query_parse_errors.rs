//! Property: a malformed query is refused with `Error::QuerySyntax` naming the
//! 0-based *character* position of the problem and what was expected there; an
//! over-long query is `Error::TooLarge`; a well-formed query that cannot run
//! (an attribute compared with an ordering operator, a page size out of range) is
//! `Error::InvalidQuery`. No malformed query panics or runs.

use chartvault::access::{Principal, Purpose, Role};
use chartvault::query::parse::{MAX_DEPTH, MAX_QUERY_LEN};
use chartvault::query::{CmpOp, Literal, QueryBuilder, parse};
use chartvault::{Coding, Date, Error, NewDocument, SecretKey, Value, Vault, VaultKey, VaultOptions};

/// (query, expected position, a phrase the `expected` description must contain)
fn syntax_cases() -> Vec<(String, usize, &'static str)> {
    let mut v: Vec<(String, usize, &'static str)> = vec![
        // Unclosed parenthesis: the end of input is where ')' was expected.
        ("(a = 1".into(), 6, "')'"),
        ("((a = 1) or (b = 2)".into(), 19, "')'"),
        // Unclosed string: reported at the end of input.
        ("a = \"abc".into(), 8, "closing '\"'"),
        ("status = \"final\" and text = \"open".into(), 33, "closing '\"'"),
        // A bad escape inside a string.
        ("a = \"x\\q\"".into(), 7, "backslash"),
        // Missing operator.
        ("a 1".into(), 2, "operator"),
        ("kind Observation".into(), 5, "operator"),
        // A lone '!' is not an operator.
        ("a ! 1".into(), 2, "'!='"),
        // Missing value.
        ("a =".into(), 3, "a value"),
        ("a = )".into(), 4, "a value"),
        ("a < < 1".into(), 4, "a value"),
        ("kind = and".into(), 7, "a value"),
        // Missing field / dangling connective.
        ("= 1".into(), 0, "a field name"),
        ("a = 1 and".into(), 9, "a field name"),
        ("a = 1 or or b = 2".into(), 9, "a field name"),
        ("not".into(), 3, "a field name"),
        (")".into(), 0, "a field name"),
        ("and = 1".into(), 0, "a field name"),
        // `in` lists.
        ("a in 1".into(), 5, "'(' after 'in'"),
        ("a in (1, 2".into(), 10, "',' or ')'"),
        ("a in ()".into(), 6, "a value"),
        ("a in (1 2)".into(), 8, "',' or ')'"),
        // Bad dates and datetimes.
        ("effective >= 2024-13-01".into(), 13, "valid date"),
        ("effective >= 2023-02-29".into(), 13, "valid date"),
        ("effective < 2024-01-01T25:00:00Z".into(), 12, "RFC 3339"),
        ("effective < 2024-01-01T10:00:00".into(), 12, "RFC 3339"),
        // Malformed numbers.
        ("value = -".into(), 8, "a number"),
        ("value = 12abc".into(), 8, "a number"),
        // An empty code after `system:`.
        ("code = loinc:".into(), 13, "a code after 'system:'"),
        // `order` without `by`, `order by` without a field.
        ("a = 1 order b".into(), 12, "'by' after 'order'"),
        ("order".into(), 5, "'by' after 'order'"),
        ("order by".into(), 8, "a field name after 'order by'"),
        ("a = 1 order by and".into(), 15, "a field name after 'order by'"),
        // `limit` without a (whole, non-negative) number.
        ("limit".into(), 5, "a whole number"),
        ("a = 1 limit x".into(), 12, "a whole number"),
        ("limit 1.5".into(), 6, "a whole number"),
        ("limit -3".into(), 6, "a whole number"),
        ("order by effective desc limit".into(), 29, "a whole number"),
        // Trailing garbage.
        ("a = 1 b".into(), 6, "end of the query"),
        ("a = 1 b = 2".into(), 6, "end of the query"),
        ("a = 1 order by b desc limit 5 extra".into(), 30, "end of the query"),
        ("a = 1 limit 5 limit 5".into(), 14, "end of the query"),
        ("a = 1)".into(), 5, "end of the query"),
        ("limit 5 order by a".into(), 8, "end of the query"),
        // Unknown characters.
        ("a = 1 & b = 2".into(), 6, "a field name, a value, an operator or a parenthesis"),
        ("a = 1; drop".into(), 5, "a field name, a value, an operator or a parenthesis"),
        ("a = #".into(), 4, "a field name, a value, an operator or a parenthesis"),
        ("a = 'single'".into(), 4, "a field name, a value, an operator or a parenthesis"),
        ("a = 1 || b = 2".into(), 6, "a field name, a value, an operator or a parenthesis"),
        // Positions count characters, not bytes: "é" is one character (two bytes).
        ("status = \"é\" )".into(), 13, "end of the query"),
        ("status = \"日本語\" and ?".into(), 19, "a field name, a value, an operator or a parenthesis"),
    ];
    // Too deep nesting: the first level past MAX_DEPTH is reported where it starts.
    let deep_parens = format!("{}a = 1{}", "(".repeat(100), ")".repeat(100));
    v.push((deep_parens, MAX_DEPTH, "less nesting"));
    let deep_nots = format!("{}a = 1", "not ".repeat(100));
    v.push((deep_nots, MAX_DEPTH * 4, "less nesting"));
    v
}

#[test]
fn malformed_queries_report_position_and_expectation() {
    let cases = syntax_cases();
    assert!(cases.len() >= 15);
    for (src, want_pos, want_phrase) in &cases {
        match parse(src) {
            Err(Error::QuerySyntax { position, expected }) => {
                assert_eq!(position, *want_pos, "position for {src:?} (expected: {expected})");
                assert!(!expected.trim().is_empty(), "{src:?}: empty expectation");
                assert!(expected.contains(want_phrase), "{src:?}: expected {expected:?} to mention {want_phrase:?}");
                // The message shown to a user names both.
                let msg = Error::QuerySyntax { position, expected: expected.clone() }.to_string();
                assert!(msg.contains(&format!("position {want_pos}")) && msg.contains(&expected), "{msg}");
            }
            other => panic!("{src:?}: expected a syntax error at {want_pos}, got {other:?}"),
        }
    }
}

#[test]
fn nesting_up_to_the_limit_is_accepted() {
    // A comparison inside MAX_DEPTH - 1 parentheses is MAX_DEPTH levels deep.
    let ok = format!("{}a = 1{}", "(".repeat(MAX_DEPTH - 1), ")".repeat(MAX_DEPTH - 1));
    assert!(parse(&ok).is_ok(), "{MAX_DEPTH} levels must parse");
    let ok = format!("{}a = 1", "not ".repeat(MAX_DEPTH - 1));
    assert!(parse(&ok).is_ok());
    // One more level: reported at the comparison that is one level too deep.
    let too_deep = format!("{}a = 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(matches!(parse(&too_deep), Err(Error::QuerySyntax { position, .. }) if position == MAX_DEPTH));
}

#[test]
fn over_long_queries_are_too_large() {
    // Exactly at the limit: accepted.
    let filler = "x".repeat(MAX_QUERY_LEN - "a = \"\"".len());
    let at_limit = format!("a = \"{filler}\"");
    assert_eq!(at_limit.len(), MAX_QUERY_LEN);
    assert!(parse(&at_limit).is_ok());
    // One byte over, and far over (a long chain of valid conditions): refused before parsing.
    for src in [format!("{at_limit} "), "a = 1 or ".repeat(MAX_QUERY_LEN / 4) + "a = 1", "(".repeat(1 << 20)] {
        match parse(&src) {
            Err(Error::TooLarge { what, size, limit }) => {
                assert_eq!(what, "query");
                assert_eq!(size, src.len() as u64);
                assert_eq!(limit, MAX_QUERY_LEN as u64);
            }
            other => panic!("{} bytes: expected TooLarge, got {other:?}", src.len()),
        }
    }
}

fn vault() -> (tempfile::TempDir, Vault) {
    let dir = tempfile::tempdir().unwrap();
    let opts = VaultOptions { checkpoint_every: 0, ..VaultOptions::default() };
    let v = Vault::create(&dir.path().join("p.cv"), VaultKey::Raw(&SecretKey::random()), opts).unwrap();
    (dir, v)
}

#[test]
fn sessions_report_the_same_syntax_errors() {
    let (_d, v) = vault();
    let dr = v.session(Principal::new("dr", Role::physician(), "h", Purpose::Treat).with_care_team(["P1"])).unwrap();
    for (src, want_pos, _) in syntax_cases() {
        match dr.query_str(&src) {
            Err(Error::QuerySyntax { position, .. }) => assert_eq!(position, want_pos, "{src:?}"),
            other => panic!("{src:?}: {other:?}"),
        }
    }
    assert!(matches!(dr.query_str(&"a = 1 or ".repeat(MAX_QUERY_LEN)), Err(Error::TooLarge { .. })));
}

#[test]
fn semantically_invalid_queries_are_invalid_query() {
    let (_d, v) = vault();
    let dr = v.session(Principal::new("dr", Role::physician(), "h", Purpose::Treat).with_care_team(["P1"])).unwrap();
    dr.put(
        &NewDocument::new("P1", "Observation")
            .unwrap()
            .with("code", Value::from(Coding::new("loinc", "4548-4", None)))
            .with("effective", Value::Date(Date::parse("2024-03-01").unwrap())),
    )
    .unwrap();
    let invalid = [
        "patient < \"x\"",
        "patient >= P1",
        "kind > Observation",
        "kind <= \"Claim\"",
        "id < \"00000000000000000000000000000000\"",
        "code = loinc:4548-4 and not patient > \"P1\"",
        "(kind = Observation or patient < \"P2\")",
        "created = \"yesterday\"",
        "updated >= 5",
        "created < true",
        "limit 0",
        "kind = Observation limit 0",
        "limit 100000",
        "limit 10001",
        "order by effective limit 18446744073709551615",
    ];
    for src in invalid {
        match dr.query_str(src) {
            Err(Error::InvalidQuery(msg)) => assert!(!msg.is_empty(), "{src}"),
            other => panic!("{src:?}: expected InvalidQuery, got {other:?}"),
        }
    }
    // The same through the builder.
    let d = Literal::Date(Date::parse("2024-01-01").unwrap());
    for q in [
        QueryBuilder::new().cmp("patient", CmpOp::Lt, Literal::Text("x".into())).build(),
        QueryBuilder::new().cmp("kind", CmpOp::Ge, Literal::Text("Observation".into())).build(),
        QueryBuilder::new().cmp("created", CmpOp::Eq, Literal::Number(5.into())).build(),
        QueryBuilder::new().cmp("effective", CmpOp::Ge, d.clone()).limit(0).build(),
        QueryBuilder::new().cmp("effective", CmpOp::Ge, d).limit(10_001).build(),
    ] {
        assert!(matches!(dr.query(&q), Err(Error::InvalidQuery(_))), "{q}");
    }
    // Boundary values are valid.
    for src in ["limit 1", "limit 10000", "patient != \"P1\"", "kind in (Observation, Claim)", "created < 2100-01-01"] {
        assert!(dr.query_str(src).is_ok(), "{src}");
    }
    assert_eq!(dr.query_str("patient = \"P1\" limit 10000").unwrap().total, 1);
}
