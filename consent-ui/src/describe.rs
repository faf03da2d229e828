//! Plain words for a grant line, built from the schema's descriptions.

use coffer_auth::{Action, ColumnSet, RowScope, ScopeToken, TablePermission};
use coffer_core::TableDef;

use crate::views::{ColumnView, ConsentLine};

/// The word a person reads for an action.
fn word(action: Action) -> &'static str {
    match action {
        Action::Read => "see",
        Action::Create => "add",
        Action::Update => "change",
        Action::Delete => "delete",
    }
}

/// Builds the plain-words line for `permission` on `table`.
///
/// - The actions read as "see", "add", "change", "delete", in that order.
/// - The columns are the table's (all of them, or the listed ones) in schema
///   order; a listed name the table doesn't have is shown by name, without a
///   description.
/// - Row scope `own` reads "only rows this app creates".
///
/// The title is a sentence made from the actions and the table's description,
/// e.g. "See, add and change the people in your address book" for
/// `contacts.people` (description "The people in your address book, one row
/// per person."). The id is the line's canonical scope token (decision 0002),
/// e.g. `contacts.people:read+write:own`. The line starts
/// [`checked`](ConsentLine::checked) and not
/// [`already_granted`](ConsentLine::already_granted).
pub fn describe_line(table: &TableDef, permission: &TablePermission) -> ConsentLine {
    let words: Vec<&str> = permission.actions.iter().map(|a| word(*a)).collect();
    let actions_text = capitalize(&join_words(&words));

    let column_views: Vec<ColumnView> = match &permission.columns {
        ColumnSet::All => table.columns.iter().map(column_view).collect(),
        ColumnSet::Only(names) => {
            let known = table.columns.iter().filter(|c| names.contains(&c.name));
            let missing = names.iter().filter(|n| table.column(n).is_none());
            known
                .map(column_view)
                .chain(missing.map(|n| ColumnView {
                    name: n.clone(),
                    description: String::new(),
                    sensitive: None,
                }))
                .collect()
        }
    };

    let subject = subject(&table.description);
    let title = if subject.is_empty() {
        format!("{actions_text} {}", permission.table)
    } else {
        format!("{actions_text} {subject}")
    };

    ConsentLine {
        id: ScopeToken::from(permission).to_string(),
        table: permission.table.to_string(),
        title,
        actions_text,
        columns: column_views,
        all_columns: permission.columns == ColumnSet::All,
        own_rows_only: permission.row_scope == RowScope::Own,
        checked: true,
        already_granted: false,
        publisher: None,
    }
}

fn column_view(c: &coffer_core::ColumnDef) -> ColumnView {
    ColumnView {
        name: c.name.clone(),
        description: c.description.trim().to_owned(),
        sensitive: c
            .sensitive
            .as_ref()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
    }
}

/// "see", "see and add", "see, add and change".
fn join_words(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The table description as the object of a sentence: without the final
/// full stop, without a trailing ", one row per …" (how it is stored, not
/// what it is), and with a capitalized first word in lower case when it is an
/// ordinary word ("The", "Your"; not "PDF" or "iCloud").
fn subject(description: &str) -> String {
    let mut s = description.trim().trim_end_matches('.').trim_end();
    if let Some(i) = s.rfind(", one row per ") {
        s = &s[..i];
    }
    let first_word = s.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("");
    let mut chars = first_word.chars();
    let ordinary = chars.next().is_some_and(char::is_uppercase) && chars.all(char::is_lowercase);
    if ordinary {
        let mut out = String::with_capacity(s.len());
        let mut rest = s.chars();
        if let Some(first) = rest.next() {
            out.extend(first.to_lowercase());
        }
        out.extend(rest);
        out
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::line;
    use coffer_core::schema::registry::SchemaRegistry;

    #[test]
    fn reads_like_a_sentence() {
        let registry = SchemaRegistry::builtin().unwrap();
        let people = registry.latest("contacts").unwrap().table("people").unwrap().clone();
        let line1 = line("contacts.people", &["read"], None, false);
        assert_eq!(line1.title, "See the people in your address book");
        assert_eq!(line1.actions_text, "See");
        assert_eq!(line1.id, "contacts.people:read");
        assert_eq!(line1.table, "contacts.people");
        assert!(line1.all_columns && line1.checked && !line1.already_granted && !line1.own_rows_only);
        assert_eq!(line1.columns.len(), people.columns.len());

        let line2 = line("contacts.people", &["update", "read", "create"], None, true);
        assert_eq!(line2.title, "See, add and change the people in your address book");
        assert_eq!(line2.id, "contacts.people:read+create+update:own");

        let line3 = line("tasks.items", &["write"], None, false);
        assert_eq!(line3.title, "Add, change and delete the tasks on your to-do lists");
        assert_eq!(line3.id, "tasks.items:write");
        let line4 = line("tasks.items", &["delete", "read", "create", "update"], None, false);
        assert_eq!(line4.id, "tasks.items:read+write");
        assert_eq!(line4.actions_text, "See, add, change and delete");
    }

    #[test]
    fn column_lists_keep_schema_order_and_sensitive_labels() {
        let line = line(
            "contacts.people",
            &["read"],
            Some(&["birthday", "display_name", "nope"]),
            false,
        );
        let names: Vec<&str> = line.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["display_name", "birthday", "nope"]);
        assert_eq!(line.columns[1].sensitive.as_deref(), Some("date of birth"));
        assert_eq!(line.columns[2].description, "");
        assert!(!line.all_columns);
        assert_eq!(line.id, "contacts.people(birthday,display_name,nope):read");
    }

    #[test]
    fn subject_keeps_acronyms_and_names() {
        assert_eq!(subject("PDF files you scanned."), "PDF files you scanned");
        assert_eq!(
            subject("Which people belong to which groups."),
            "which people belong to which groups"
        );
        assert_eq!(subject("  "), "");
        assert_eq!(subject("iCloud things"), "iCloud things");
    }

    #[test]
    fn joins_words() {
        assert_eq!(join_words(&["see"]), "see");
        assert_eq!(join_words(&["see", "add"]), "see and add");
        assert_eq!(join_words(&["see", "add", "change"]), "see, add and change");
    }
}
