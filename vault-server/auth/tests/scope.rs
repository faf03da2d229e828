//! The scope grammar: parsing, canonical formatting, errors, resolution.

mod common;

use coffer_auth::{Action, ColumnSet, GrantError, ResolveError, RowScope, ScopeErrorReason, ScopeSet};
use common::{grant, schemas, t};

#[test]
fn canonical_forms_round_trip() {
    for s in [
        "contacts.people:read",
        "contacts.people:write",
        "contacts.people:read+write",
        "notes.*:read",
        "tasks.items:read+create:own",
        "contacts.people(email,name):read",
        "contacts.people:read notes.*:read tasks.items:update+delete:own",
        "",
    ] {
        let parsed = ScopeSet::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(parsed.to_string(), s, "canonical form of `{s}`");
        assert_eq!(ScopeSet::parse(&parsed.to_string()).unwrap(), parsed);
    }
}

#[test]
fn non_canonical_inputs_normalize() {
    let cases = [
        ("contacts.people:create+update+delete", "contacts.people:write"),
        ("contacts.people:write+read", "contacts.people:read+write"),
        ("contacts.people:read:all", "contacts.people:read"),
        (
            "contacts.people:read  contacts.people:update",
            "contacts.people:read+update",
        ),
        ("tasks.items:read:own notes.*:read", "notes.*:read tasks.items:read:own"),
        ("contacts.people(name,email):read", "contacts.people(email,name):read"),
        ("contacts.people:read contacts.people:read", "contacts.people:read"),
        ("contacts.people:delete+update", "contacts.people:update+delete"),
    ];
    for (input, canonical) in cases {
        assert_eq!(ScopeSet::parse(input).unwrap().to_string(), canonical, "{input}");
    }
}

#[test]
fn parsed_tokens_are_typed() {
    let set = ScopeSet::parse("tasks.items:read+create:own").unwrap();
    let tokens: Vec<_> = set.tokens().collect();
    assert_eq!(tokens.len(), 1);
    let tok = &tokens[0];
    assert_eq!(tok.target.schema, "tasks");
    assert_eq!(tok.target.table.as_deref(), Some("items"));
    assert_eq!(tok.actions, [Action::Read, Action::Create].into());
    assert_eq!(tok.row_scope, RowScope::Own);
    assert_eq!(tok.columns, ColumnSet::All);
}

#[test]
fn each_malformed_form_is_rejected_with_its_reason() {
    use ScopeErrorReason as R;
    let cases: Vec<(&str, ScopeErrorReason)> = vec![
        ("contacts.people", R::MissingActions),
        ("contacts:read", R::MissingTable),
        ("Contacts.people:read", R::InvalidSchemaName("Contacts".into())),
        ("contacts.People:read", R::InvalidTableName("People".into())),
        ("contacts.:read", R::InvalidTableName(String::new())),
        ("contacts.people.x:read", R::InvalidTableName("people.x".into())),
        ("*.people:read", R::InvalidSchemaName("*".into())),
        ("contacts.people:", R::EmptyAction),
        ("contacts.people:read+", R::EmptyAction),
        ("contacts.people:read++update", R::EmptyAction),
        ("contacts.people:admin", R::UnknownAction("admin".into())),
        ("contacts.people:READ", R::UnknownAction("READ".into())),
        ("contacts.people:read+read", R::DuplicateAction("read".into())),
        ("contacts.people:write+update", R::DuplicateAction("update".into())),
        ("contacts.people:read:mine", R::UnknownRowScope("mine".into())),
        ("contacts.people:read:", R::UnknownRowScope(String::new())),
        ("contacts.people:read:own:x", R::TooManyParts),
        ("contacts.people():read", R::EmptyColumnList),
        ("contacts.people(name,,email):read", R::InvalidColumnName(String::new())),
        ("contacts.people(Name):read", R::InvalidColumnName("Name".into())),
        ("contacts.people(name,name):read", R::DuplicateColumn("name".into())),
        ("contacts.people(id):read", R::SystemColumn("id".into())),
        ("contacts.people(_seq):read", R::SystemColumn("_seq".into())),
        ("contacts.people(name:read", R::BadColumnList),
        ("contacts.people(name)x:read", R::BadColumnList),
        ("contacts.people)name(:read", R::BadColumnList),
        ("notes.*(title):read", R::ColumnsOnWildcard),
        (
            "contacts.people:read\tnotes.*:read",
            R::UnknownAction("read?notes.*".into()),
        ),
    ];
    for (input, reason) in cases {
        let err = ScopeSet::parse(input).expect_err(input);
        assert_eq!(err.reason, reason, "reason for `{input}`");
        // The message names the token and says why.
        let msg = err.to_string();
        assert!(msg.starts_with("invalid scope `"), "{msg}");
        assert!(msg.contains(&reason.to_string()), "{msg}");
    }
}

#[test]
fn one_bad_token_fails_the_whole_scope() {
    let err = ScopeSet::parse("contacts.people:read notes.notes:erase").unwrap_err();
    assert_eq!(err.token, "notes.notes:erase");
    assert_eq!(err.reason, ScopeErrorReason::UnknownAction("erase".into()));
}

#[test]
fn oversized_scopes_are_rejected() {
    let long = "contacts.people:read ".repeat(500);
    assert_eq!(ScopeSet::parse(&long).unwrap_err().reason, ScopeErrorReason::TooLong);
    let many = (0..200).map(|i| format!("s{i}.t:read")).collect::<Vec<_>>().join(" ");
    assert_eq!(
        ScopeSet::parse(&many).unwrap_err().reason,
        ScopeErrorReason::TooManyTokens
    );
}

#[test]
fn error_text_is_safe_to_echo() {
    let err = ScopeSet::parse("contacts.people:re\"ad\u{7f}").unwrap_err();
    let msg = err.to_string();
    assert!(msg.chars().all(|c| (' '..='~').contains(&c)), "{msg}");
    assert!(!msg.contains('"'));
}

#[test]
fn wildcard_resolves_to_every_table_of_the_schema() {
    let g = grant("notes.*:read");
    let tables: Vec<String> = g.tables().map(|t| t.to_string()).collect();
    assert_eq!(tables, ["notes.folders", "notes.notes"]);
    assert!(g.allows(&t("notes.notes"), Action::Read));
    assert!(g.allows(&t("notes.folders"), Action::Read));
    assert!(!g.allows(&t("notes.notes"), Action::Update));
    assert_eq!(g.to_scope_string(), "notes.folders:read notes.notes:read");
}

#[test]
fn wildcard_and_explicit_tokens_merge() {
    let g = grant("notes.*:read notes.notes:write:own");
    assert_eq!(
        g.to_scope_string(),
        "notes.folders:read notes.notes:read notes.notes:write:own"
    );
    let acc = g.access(&t("notes.notes"), Action::Update).unwrap();
    assert_eq!(acc.row_scope, RowScope::Own);
    // `read` on all rows includes `read` on own rows.
    assert_eq!(grant("notes.*:read notes.notes:read:own"), grant("notes.*:read"));
}

#[test]
fn resolution_names_what_is_unknown() {
    let schemas = schemas();
    let resolve = |s: &str| ScopeSet::parse(s).unwrap().resolve(|n| schemas.get(n));
    assert_eq!(
        resolve("calendar.events:read").unwrap_err(),
        ResolveError::UnknownSchema {
            schema: "calendar".into()
        }
    );
    assert_eq!(
        resolve("contacts.groups:read").unwrap_err(),
        ResolveError::UnknownTable {
            table: t("contacts.groups")
        }
    );
    assert_eq!(
        resolve("contacts.people(name,birthday):read").unwrap_err(),
        ResolveError::UnknownColumn {
            table: t("contacts.people"),
            column: "birthday".into()
        }
    );
    assert_eq!(
        resolve("empty.*:read").unwrap_err(),
        ResolveError::EmptySchema { schema: "empty".into() }
    );
    assert!(resolve("contacts.people:read").is_ok());
    let msg = resolve("contacts.groups:read").unwrap_err().to_string();
    assert!(msg.contains("contacts.groups"), "{msg}");
}

#[test]
fn conflicting_tokens_for_one_pair_are_refused() {
    let schemas = schemas();
    let err = ScopeSet::parse("contacts.people(name):read contacts.people:read:own")
        .unwrap()
        .resolve(|n| schemas.get(n))
        .unwrap_err();
    assert_eq!(
        err,
        ResolveError::Grant(GrantError::Conflict {
            table: t("contacts.people"),
            action: Action::Read
        })
    );
}

#[test]
fn resolve_accepts_shared_schema_handles() {
    use std::sync::Arc;
    let schemas: std::collections::HashMap<String, Arc<coffer_core::SchemaDef>> =
        schemas().into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
    let g = ScopeSet::parse("tasks.items:read")
        .unwrap()
        .resolve(|n| schemas.get(n).cloned())
        .unwrap();
    assert!(g.allows(&t("tasks.items"), Action::Read));
}
