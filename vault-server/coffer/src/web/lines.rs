//! Grants in plain words: a `GrantSpec` as consent lines (one per table
//! permission, worded from the schema's descriptions), and the lines a user
//! left ticked back into a `GrantSpec`.

use coffer_auth::{ColumnSet, GrantSpec, RowScope, ScopeSet, ScopeToken, TablePermission};
use coffer_consent_ui::{ConsentLine, describe_line};
use std::collections::BTreeMap;

use coffer_core::schema::registry::SchemaRegistry;
use coffer_storage::Publisher;

use crate::services::Services;

/// One line per permission of `spec` (actions with the same columns and
/// rows on one table share a line), in canonical order.
pub fn describe(registry: &SchemaRegistry, spec: &GrantSpec) -> Vec<ConsentLine> {
    spec.permissions()
        .iter()
        .map(|p| describe_permission(registry, p))
        .collect()
}

fn describe_permission(registry: &SchemaRegistry, p: &TablePermission) -> ConsentLine {
    match registry.table(&p.table) {
        Some((_, table)) => describe_line(table, p),
        // Grants are resolved against the registry, so this is a table of a
        // schema the server no longer has: still show what it is.
        None => {
            let actions = p.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ");
            ConsentLine {
                id: ScopeToken::from(p).to_string(),
                table: p.table.to_string(),
                title: format!("{actions} {}", p.table),
                actions_text: actions,
                columns: Vec::new(),
                all_columns: p.columns == ColumnSet::All,
                own_rows_only: p.row_scope == RowScope::Own,
                checked: true,
                already_granted: false,
                publisher: None,
            }
        }
    }
}

/// [`describe`] against the schemas known now, each line labelled with
/// its publisher ([`label_publishers`]).
pub async fn described(services: &Services, spec: &GrantSpec) -> Vec<ConsentLine> {
    let mut lines = describe(&services.registry(), spec);
    label_publishers(services, &mut lines).await;
    lines
}

/// Marks each line whose table's schema is not one of Coffer's own with
/// who defined it: the name of the app that published it, or the server's
/// operator (a `--schemas-dir` file or `coffer schema publish`).
pub async fn label_publishers(services: &Services, lines: &mut [ConsentLine]) {
    let known = services.engine.schemas();
    let mut labels: BTreeMap<String, Option<String>> = BTreeMap::new();
    for line in lines.iter_mut() {
        let schema = line.table.split('.').next().unwrap_or_default().to_owned();
        if !labels.contains_key(&schema) {
            let label = match known.publisher(&schema) {
                Some(Publisher::App(client_id)) => Some(match services.oauth.app(client_id).await {
                    Ok(app) => app.name,
                    Err(_) => "an app".to_owned(),
                }),
                Some(Publisher::Operator) => Some("the operator of this server".to_owned()),
                Some(Publisher::Coffer) | None => None,
            };
            labels.insert(schema.clone(), label);
        }
        line.publisher = labels.get(&schema).cloned().flatten();
    }
}

/// The grant the ticked lines (their ids: scope tokens) stand for. Ids that
/// do not parse or resolve, or that conflict with another ticked line, are
/// ignored: the result is always intersected with what was asked or
/// granted, so a forged form can only narrow.
pub fn ticked(registry: &SchemaRegistry, ids: &[&str]) -> GrantSpec {
    ids.iter()
        .filter_map(|id| ScopeSet::parse(id).ok()?.resolve(|n: &str| registry.latest(n)).ok())
        .fold(GrantSpec::new(), |spec, resolved| spec.union(&resolved))
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
        assert_eq!(granted.without(&kept).to_scope_string(), "notes.notes:read+write:own");
        assert_eq!(kept.union(&granted.without(&kept)), granted);
    }
}
