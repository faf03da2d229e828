//! Plain words for a grant line, built from the schema's descriptions.

use coffer_core::{SchemaDef, TableDef};

use crate::views::{ColumnView, ConsentLine};

/// The canonical order of actions, with the word a person reads for each.
const ACTIONS: [(&str, &str); 4] = [
    ("read", "see"),
    ("create", "add"),
    ("update", "change"),
    ("delete", "delete"),
];

/// Builds the plain-words line for `actions` on `table` of `schema`.
///
/// - `actions` are `read`, `create`, `update`, `delete` (and `write` for the
///   last three), in any order; they are read as "see", "add", "change",
///   "delete". Any other word is shown as it is, so that nothing an app asks
///   for is hidden from the user.
/// - `columns`: `None` means every column of the table; otherwise the listed
///   columns in schema order (a name the table doesn't have is shown by name,
///   without a description).
/// - `own_rows_only`: row scope `own` ("only rows this app creates").
///
/// The title is a sentence made from the actions and the table's description,
/// e.g. "See, add and change the people in your address book" for
/// `contacts.people` (description "The people in your address book, one row
/// per person."). The id is the line's canonical scope token (decision 0002),
/// e.g. `contacts.people:read+write:own`. The line starts
/// [`checked`](ConsentLine::checked) and not
/// [`already_granted`](ConsentLine::already_granted).
pub fn describe_line(
    schema: &SchemaDef,
    table: &TableDef,
    actions: &[&str],
    columns: Option<&[String]>,
    own_rows_only: bool,
) -> ConsentLine {
    let (known, unknown) = split_actions(actions);
    let mut words: Vec<&str> = ACTIONS
        .iter()
        .zip(known)
        .filter(|(_, on)| *on)
        .map(|((_, word), _)| *word)
        .collect();
    words.extend(unknown.iter().copied());
    let actions_text = capitalize(&join_words(&words));

    let column_views: Vec<ColumnView> = match columns {
        None => table.columns.iter().map(column_view).collect(),
        Some(names) => {
            let mut views: Vec<ColumnView> = table
                .columns
                .iter()
                .filter(|c| names.iter().any(|n| n == &c.name))
                .map(column_view)
                .collect();
            let mut missing: Vec<&String> = names.iter().filter(|n| table.column(n).is_none()).collect();
            missing.sort();
            missing.dedup();
            views.extend(missing.into_iter().map(|n| ColumnView {
                name: n.clone(),
                description: String::new(),
                sensitive: None,
            }));
            views
        }
    };

    let subject = subject(&table.description);
    let title = if subject.is_empty() {
        format!("{actions_text} {}.{}", schema.name, table.name)
    } else {
        format!("{actions_text} {subject}")
    };

    let table_name = format!("{}.{}", schema.name, table.name);
    let id = scope_token(&table_name, known, &unknown, columns, own_rows_only);
    ConsentLine {
        id,
        table: table_name,
        title,
        actions_text,
        columns: column_views,
        all_columns: columns.is_none(),
        own_rows_only,
        checked: true,
        already_granted: false,
    }
}

/// Which of the four actions are asked for (in [`ACTIONS`] order), and the
/// words that are not actions, in the order given, without repeats.
fn split_actions<'a>(actions: &[&'a str]) -> ([bool; 4], Vec<&'a str>) {
    let mut known = [false; 4];
    let mut unknown: Vec<&str> = Vec::new();
    for &action in actions {
        let action = action.trim();
        if action == "write" {
            known[1] = true;
            known[2] = true;
            known[3] = true;
        } else if let Some(i) = ACTIONS.iter().position(|(a, _)| *a == action) {
            known[i] = true;
        } else if !action.is_empty() && !unknown.contains(&action) {
            unknown.push(action);
        }
    }
    (known, unknown)
}

/// The canonical scope token of a line (decision 0002): sorted column list,
/// actions in canonical order with create+update+delete written `write`,
/// `:own` only for own rows.
fn scope_token(table: &str, known: [bool; 4], unknown: &[&str], columns: Option<&[String]>, own: bool) -> String {
    let mut token = table.to_owned();
    if let Some(columns) = columns {
        let mut sorted: Vec<&str> = columns.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        token.push('(');
        token.push_str(&sorted.join(","));
        token.push(')');
    }
    let mut parts: Vec<&str> = Vec::new();
    if known[0] {
        parts.push("read");
    }
    if known[1] && known[2] && known[3] {
        parts.push("write");
    } else {
        for (i, (action, _)) in ACTIONS.iter().enumerate().skip(1) {
            if known[i] {
                parts.push(action);
            }
        }
    }
    parts.extend(unknown.iter().copied());
    token.push(':');
    token.push_str(&parts.join("+"));
    if own {
        token.push_str(":own");
    }
    token
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
    use coffer_core::schema::registry::SchemaRegistry;

    fn table(schema: &str, table: &str) -> (std::sync::Arc<SchemaDef>, TableDef) {
        let registry = SchemaRegistry::builtin().unwrap();
        let schema = registry.latest(schema).unwrap();
        let table = schema.table(table).unwrap().clone();
        (schema, table)
    }

    #[test]
    fn reads_like_a_sentence() {
        let (schema, people) = table("contacts", "people");
        let line = describe_line(&schema, &people, &["read"], None, false);
        assert_eq!(line.title, "See the people in your address book");
        assert_eq!(line.actions_text, "See");
        assert_eq!(line.id, "contacts.people:read");
        assert_eq!(line.table, "contacts.people");
        assert!(line.all_columns && line.checked && !line.already_granted && !line.own_rows_only);
        assert_eq!(line.columns.len(), people.columns.len());

        let line = describe_line(&schema, &people, &["update", "read", "create"], None, true);
        assert_eq!(line.title, "See, add and change the people in your address book");
        assert_eq!(line.id, "contacts.people:read+create+update:own");

        let (schema, items) = table("tasks", "items");
        let line = describe_line(&schema, &items, &["write"], None, false);
        assert_eq!(line.title, "Add, change and delete the tasks on your to-do lists");
        assert_eq!(line.id, "tasks.items:write");
        let line = describe_line(&schema, &items, &["delete", "read", "create", "update"], None, false);
        assert_eq!(line.id, "tasks.items:read+write");
        assert_eq!(line.actions_text, "See, add, change and delete");
    }

    #[test]
    fn column_lists_keep_schema_order_and_sensitive_labels() {
        let (schema, people) = table("contacts", "people");
        let cols = vec!["birthday".to_owned(), "display_name".to_owned(), "nope".to_owned()];
        let line = describe_line(&schema, &people, &["read"], Some(&cols), false);
        let names: Vec<&str> = line.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["display_name", "birthday", "nope"]);
        assert_eq!(line.columns[1].sensitive.as_deref(), Some("date of birth"));
        assert_eq!(line.columns[2].description, "");
        assert!(!line.all_columns);
        assert_eq!(line.id, "contacts.people(birthday,display_name,nope):read");
    }

    #[test]
    fn unknown_actions_are_shown_not_hidden() {
        let (schema, notes) = table("notes", "notes");
        let line = describe_line(&schema, &notes, &["read", "share"], None, false);
        assert_eq!(line.title, "See and share your notes");
        assert_eq!(line.id, "notes.notes:read+share");
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
