//! The scope grammar against the shared test vectors in
//! `docs/scope-vectors.json`, which the SDKs run too; and the grammar in
//! `docs/scope-syntax.md` against decision 0002.

use coffer_auth::{ScopeErrorReason, ScopeSet};
use serde_json::Value;

const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{DOCS}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A vector's input: `input`, or `repeat` written `times` times.
fn input(v: &Value) -> String {
    match (v["input"].as_str(), v["repeat"].as_str(), v["times"].as_u64()) {
        (Some(s), None, None) => s.to_owned(),
        (None, Some(token), Some(n)) => vec![token; n as usize].join(" "),
        _ => panic!("a vector needs `input`, or `repeat` and `times`: {v}"),
    }
}

/// The part of the token a reason names, if it names one.
fn value(reason: &ScopeErrorReason) -> Option<&str> {
    use ScopeErrorReason as R;
    match reason {
        R::InvalidSchemaName(s)
        | R::InvalidTableName(s)
        | R::InvalidColumnName(s)
        | R::SystemColumn(s)
        | R::DuplicateColumn(s)
        | R::UnknownAction(s)
        | R::DuplicateAction(s)
        | R::UnknownRowScope(s) => Some(s),
        _ => None,
    }
}

#[test]
fn the_implementation_meets_every_vector() {
    let vectors: Value = serde_json::from_str(&read("scope-vectors.json")).unwrap();
    let valid = vectors["valid"].as_array().unwrap();
    let invalid = vectors["invalid"].as_array().unwrap();
    assert!(valid.len() + invalid.len() >= 30);
    for v in valid {
        let (input, canonical) = (input(v), v["canonical"].as_str().unwrap());
        let parsed = ScopeSet::parse(&input).unwrap_or_else(|e| panic!("`{input}`: {e}"));
        assert_eq!(parsed.to_string(), canonical, "canonical form of `{input}`");
        assert_eq!(
            ScopeSet::parse(canonical).unwrap().to_string(),
            canonical,
            "`{canonical}` again"
        );
    }
    let mut codes = std::collections::BTreeSet::new();
    for v in invalid {
        let input = input(v);
        let err = ScopeSet::parse(&input).expect_err(&input);
        assert_eq!(err.reason.code(), v["reason"].as_str().unwrap(), "reason for `{input}`");
        assert_eq!(value(&err.reason), v["value"].as_str(), "value for `{input}`");
        codes.insert(err.reason.code());
    }
    // Every reason the grammar can give is covered.
    assert_eq!(codes.len(), 17, "{codes:?}");
}

#[test]
fn the_published_grammar_is_the_decided_one() {
    let grammar = |text: &str| {
        let start = text.find("```text\n").expect("a ```text block") + 8;
        text[start..][..text[start..].find("```").unwrap()].to_owned()
    };
    assert_eq!(
        grammar(&read("scope-syntax.md")),
        grammar(&read("decisions/0002-scope-syntax.md"))
    );
}
