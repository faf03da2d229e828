//! Grants: narrowing, subsets, and the RFC 9396 authorization_details form.

mod common;

use coffer_auth::{
    Action, AuthorizationDetail, ColumnSet, DetailsError, GrantSpec, ResolveError, RowScope, ScopeErrorReason,
    TablePermission,
};
use common::{grant, schemas, t};

#[test]
fn narrowing_keeps_only_what_both_allow() {
    let asked = grant("contacts.people:read+write notes.*:read tasks.items:read");
    // The user unticked writing contacts and the folders, kept two columns
    // of people, and let tasks see own rows only.
    let kept = grant("contacts.people(name,email):read notes.notes:read tasks.items:read:own");
    let granted = asked.intersect(&kept);
    assert_eq!(
        granted.to_scope_string(),
        "contacts.people(email,name):read notes.notes:read tasks.items:read:own"
    );
    assert!(granted.is_subset_of(&asked));
    assert!(granted.is_subset_of(&kept));
    assert!(!asked.is_subset_of(&granted));
}

#[test]
fn a_forged_consent_form_cannot_widen() {
    let asked = grant("contacts.people(name):read");
    let forged = grant("contacts.people:read+write notes.*:read");
    let granted = asked.intersect(&forged);
    assert_eq!(granted, asked);
}

#[test]
fn unticking_a_line_removes_one_pair() {
    let mut g = grant("contacts.people:read+write");
    assert!(g.remove(&t("contacts.people"), Action::Delete));
    assert!(!g.remove(&t("contacts.people"), Action::Delete));
    assert_eq!(g.to_scope_string(), "contacts.people:read+create+update");
}

#[test]
fn disjoint_columns_narrow_to_nothing() {
    let a = grant("contacts.people(name):read");
    let b = grant("contacts.people(email):read");
    assert!(a.intersect(&b).is_empty());
}

#[test]
fn subset_respects_columns_and_rows() {
    let all = grant("tasks.items:read+update");
    let own = grant("tasks.items:read:own");
    let cols = grant("tasks.items(title):update");
    assert!(own.is_subset_of(&all));
    assert!(cols.is_subset_of(&all));
    assert!(!all.is_subset_of(&own));
    assert!(!grant("tasks.items:delete").is_subset_of(&all));
    assert!(GrantSpec::new().is_subset_of(&own));
}

#[test]
fn scope_string_is_lossless() {
    for scope in [
        "contacts.people(email,name):read contacts.people:update:own tasks.items:read+write",
        "notes.folders:read notes.notes(title):read+create:own",
    ] {
        let g = grant(scope);
        assert_eq!(g.to_scope_string(), scope);
        assert_eq!(grant(&g.to_scope_string()), g);
    }
}

#[test]
fn authorization_details_round_trip() {
    let g = grant("contacts.people(email,name):read contacts.people:update:own tasks.items:read+write");
    let json = g.to_authorization_details_json();
    assert_eq!(
        json,
        serde_json::json!([
            {"type": "coffer_table", "table": "contacts.people", "actions": ["read"],
             "columns": ["email", "name"], "rows": "all"},
            {"type": "coffer_table", "table": "contacts.people", "actions": ["update"], "rows": "own"},
            {"type": "coffer_table", "table": "tasks.items",
             "actions": ["read", "create", "update", "delete"], "rows": "all"}
        ])
    );
    let back = GrantSpec::from_authorization_details_json(&json.to_string()).unwrap();
    assert_eq!(back, g);
    let typed = g.to_authorization_details();
    assert_eq!(GrantSpec::from_authorization_details(&typed).unwrap(), g);
}

#[test]
fn authorization_details_defaults_and_write() {
    let text = r#"[{"type":"coffer_table","table":"tasks.items","actions":["read","write"]},
                   {"type":"coffer_table","table":"contacts.people","actions":["read"],"columns":["name"],"rows":"own"}]"#;
    let g = GrantSpec::from_authorization_details_json(text).unwrap();
    assert_eq!(g, grant("tasks.items:read+write contacts.people(name):read:own"));
    let acc = g.access(&t("contacts.people"), Action::Read).unwrap();
    assert_eq!(acc.columns, ColumnSet::only(["name"]));
    assert_eq!(acc.row_scope, RowScope::Own);
    g.check_against(|n| schemas().get(n).cloned()).unwrap();
}

#[test]
fn authorization_details_errors_say_what_and_where() {
    type Expect = fn(&DetailsError) -> bool;
    let cases: Vec<(&str, Expect)> = vec![
        ("not json", |e| matches!(e, DetailsError::Json(_))),
        (r#"{"type":"coffer_table"}"#, |e| matches!(e, DetailsError::NotArray)),
        (
            r#"[{"type":"payment_initiation"}]"#,
            |e| matches!(e, DetailsError::UnsupportedType { index: 0, kind: Some(k) } if k == "payment_initiation"),
        ),
        (r#"[{"table":"a.b","actions":["read"]}]"#, |e| {
            matches!(e, DetailsError::UnsupportedType { index: 0, kind: None })
        }),
        (
            r#"[{"type":"coffer_table","table":"tasks.items","actions":["read"],"locations":["x"]}]"#,
            |e| matches!(e, DetailsError::Invalid { index: 0, reason } if reason.contains("locations")),
        ),
        (
            r#"[{"type":"coffer_table","table":"tasks.items"}]"#,
            |e| matches!(e, DetailsError::Invalid { index: 0, reason } if reason.contains("actions")),
        ),
        (r#"[{"type":"coffer_table","table":"tasks.items","actions":[]}]"#, |e| {
            matches!(
                e,
                DetailsError::Field {
                    index: 0,
                    reason: ScopeErrorReason::EmptyAction
                }
            )
        }),
        (
            r#"[{"type":"coffer_table","table":"tasks.items","actions":["read"]},
             {"type":"coffer_table","table":"tasks","actions":["read"]}]"#,
            |e| {
                matches!(
                    e,
                    DetailsError::Field {
                        index: 1,
                        reason: ScopeErrorReason::MissingTable
                    }
                )
            },
        ),
        (
            r#"[{"type":"coffer_table","table":"notes.*","actions":["read"]}]"#,
            |e| {
                matches!(
                    e,
                    DetailsError::Field {
                        index: 0,
                        reason: ScopeErrorReason::InvalidTableName(_)
                    }
                )
            },
        ),
        (
            r#"[{"type":"coffer_table","table":"tasks.items","actions":["erase"]}]"#,
            |e| matches!(e, DetailsError::Field { reason: ScopeErrorReason::UnknownAction(a), .. } if a == "erase"),
        ),
        (
            r#"[{"type":"coffer_table","table":"tasks.items","actions":["read"],"columns":[]}]"#,
            |e| {
                matches!(
                    e,
                    DetailsError::Field {
                        reason: ScopeErrorReason::EmptyColumnList,
                        ..
                    }
                )
            },
        ),
        (
            r#"[{"type":"coffer_table","table":"tasks.items","actions":["read"],"columns":["id"]}]"#,
            |e| {
                matches!(
                    e,
                    DetailsError::Field {
                        reason: ScopeErrorReason::SystemColumn(_),
                        ..
                    }
                )
            },
        ),
        (
            r#"[{"type":"coffer_table","table":"tasks.items","actions":["read"],"rows":"mine"}]"#,
            |e| {
                matches!(
                    e,
                    DetailsError::Field {
                        reason: ScopeErrorReason::UnknownRowScope(_),
                        ..
                    }
                )
            },
        ),
        (
            r#"[{"type":"coffer_table","table":"tasks.items","actions":["read"],"columns":["title"]},
             {"type":"coffer_table","table":"tasks.items","actions":["read"],"rows":"own"}]"#,
            |e| matches!(e, DetailsError::Grant { index: 1, .. }),
        ),
    ];
    for (text, check) in cases {
        let err = GrantSpec::from_authorization_details_json(text).expect_err(text);
        assert!(check(&err), "{text}: {err:?}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn authorization_details_are_checked_against_schemas() {
    let schemas = schemas();
    let g = GrantSpec::from_authorization_details(&[AuthorizationDetail {
        kind: "coffer_table".into(),
        table: "contacts.people".into(),
        actions: vec!["read".into()],
        columns: Some(vec!["shoe_size".into()]),
        rows: None,
    }])
    .unwrap();
    assert_eq!(
        g.check_against(|n| schemas.get(n)).unwrap_err(),
        ResolveError::UnknownColumn {
            table: t("contacts.people"),
            column: "shoe_size".into()
        }
    );
}

#[test]
fn permissions_round_trip_through_from_permissions() {
    let g = grant("contacts.people(name):read+update contacts.people:create:own");
    let perms = g.permissions();
    assert_eq!(perms.len(), 2);
    assert_eq!(GrantSpec::from_permissions(perms).unwrap(), g);
    let p = TablePermission::new(t("tasks.items"), Action::ALL).with_rows(RowScope::Own);
    let g2 = GrantSpec::from_permissions([p]).unwrap();
    assert_eq!(g2.to_scope_string(), "tasks.items:read+write:own");
}

#[test]
fn grant_spec_serde_uses_the_details_form() {
    let g = grant("contacts.people(name):read tasks.items:write:own");
    let json = serde_json::to_string(&g).unwrap();
    assert_eq!(serde_json::to_value(&g).unwrap(), g.to_authorization_details_json());
    let back: GrantSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, g);
    assert!(serde_json::from_str::<GrantSpec>(r#"[{"type":"x","table":"a.b","actions":["read"]}]"#).is_err());
}
