//! Grants in plain words: a `GrantSpec` as consent lines (one per table
//! permission, worded from the schema's descriptions), and the lines a user
//! left ticked back into a `GrantSpec`.

use std::collections::BTreeSet;

use coffer_auth::{ColumnSet, GrantSpec, RowScope, ScopeSet, ScopeToken, TablePermission};
use coffer_consent_ui::{ConsentLine, describe_line};
use coffer_core::schema::registry::SchemaRegistry;

/// One line per permission of `spec` (actions with the same columns and
/// rows on one table share a line), in canonical order.
pub fn describe(registry: &SchemaRegistry, spec: &GrantSpec) -> Vec<ConsentLine> {
    spec.permissions()
        .iter()
        .map(|p| describe_permission(registry, p))
        .collect()
}

fn describe_permission(registry: &SchemaRegistry, p: &TablePermission) -> ConsentLine {
    let actions: Vec<&str> = p.actions.iter().map(|a| a.as_str()).collect();
    let columns: Option<Vec<String>> = match &p.columns {
        ColumnSet::All => None,
        ColumnSet::Only(set) => Some(set.iter().cloned().collect()),
    };
    let own = p.row_scope == RowScope::Own;
    match registry.table(&p.table) {
        Some((schema, table)) => describe_line(&schema, table, &actions, columns.as_deref(), own),
        // Grants are resolved against the registry, so this is a table of a
        // schema the server no longer has: still show what it is.
        None => ConsentLine {
            id: ScopeToken::from(p).to_string(),
            table: p.table.to_string(),
            title: format!("{} {}", actions.join(", "), p.table),
            actions_text: actions.join(", "),
            columns: Vec::new(),
            all_columns: columns.is_none(),
            own_rows_only: own,
            checked: true,
            already_granted: false,
        },
    }
}

/// The grant the ticked lines (their ids: scope tokens) stand for. Ids that
/// do not parse or resolve, or that conflict with another ticked line, are
/// ignored: the result is always intersected with what was asked or
/// granted, so a forged form can only narrow.
pub fn ticked(registry: &SchemaRegistry, ids: &[&str]) -> GrantSpec {
    let mut spec = GrantSpec::new();
    for id in ids {
        let Ok(set) = ScopeSet::parse(id) else { continue };
        let Ok(resolved) = set.resolve(|n: &str| registry.latest(n)) else {
            continue;
        };
        for p in resolved.permissions() {
            let _ = spec.insert(p);
        }
    }
    spec
}

/// The pairs of `spec` whose (table, action) `other` does not mention.
pub fn without(spec: &GrantSpec, other: &GrantSpec) -> GrantSpec {
    let mut out = GrantSpec::new();
    for (table, action, access) in spec.pairs() {
        if !other.allows(table, action) {
            let _ = out.insert(TablePermission {
                table: table.clone(),
                actions: BTreeSet::from([action]),
                columns: access.columns.clone(),
                row_scope: access.row_scope,
            });
        }
    }
    out
}

/// `a` with every pair of `b` added (pairs of `b` that conflict with `a`
/// are left out).
pub fn union(a: &GrantSpec, b: &GrantSpec) -> GrantSpec {
    let mut out = a.clone();
    for p in b.permissions() {
        let _ = out.insert(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(registry: &SchemaRegistry, scope: &str) -> GrantSpec {
        ScopeSet::parse(scope)
            .unwrap()
            .resolve(|n: &str| registry.latest(n))
            .unwrap()
    }

    #[test]
    fn lines_round_trip_through_their_ids() {
        let registry = SchemaRegistry::builtin().unwrap();
        let granted = spec(
            &registry,
            "contacts.people(birthday,display_name):read notes.notes:read+write:own tasks.items:read",
        );
        let lines = describe(&registry, &granted);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].title, "See the people in your address book");
        assert!(!lines[0].all_columns && lines[1].own_rows_only);
        let ids: Vec<&str> = lines.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ticked(&registry, &ids), granted);
        // Unticking one line, plus junk a forged form might send.
        let kept = ticked(&registry, &[ids[0], ids[2], "nope", "unknown.table:read", ""]);
        assert_eq!(
            kept.to_scope_string(),
            "contacts.people(birthday,display_name):read tasks.items:read"
        );
        assert_eq!(without(&granted, &kept).to_scope_string(), "notes.notes:read+write:own");
        assert_eq!(union(&kept, &without(&granted, &kept)), granted);
    }
}
