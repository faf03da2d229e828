//! The scope grammar (decision record `docs/decisions/0002-scope-syntax.md`).
//!
//! ```text
//! scope       = [ scope-token *( 1*SP scope-token ) ]
//! scope-token = target [ "(" column *( "," column ) ")" ] ":" actions [ ":" rows ]
//! target      = schema "." ( table / "*" )
//! actions     = action *( "+" action )
//! action      = "read" / "create" / "update" / "delete" / "write"
//! rows        = "own" / "all"                      ; default all
//! schema, table, column = 1-63 of [a-z0-9_], starting with a letter
//! ```
//!
//! Examples: `contacts.people:read`, `contacts.people:write` (create, update,
//! delete), `notes.*:read` (every table of the schema),
//! `tasks.items:read+create:own`, `contacts.people(name,email):read`.
//!
//! [`ScopeSet`] is the parsed form; its `Display` is the canonical form.
//! [`ScopeSet::resolve`] expands `*` and checks names against the schemas,
//! giving a [`GrantSpec`].

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use coffer_core::schema::{SchemaDef, TableName, is_identifier};

use crate::grant::{
    Action, ColumnSet, GrantSpec, ResolveError, RowScope, TablePermission, action_word, is_system_column,
};

/// Longest scope string accepted, in bytes.
pub const MAX_SCOPE_LEN: usize = 8192;
/// Most scope tokens (or authorization details entries) accepted in one request.
pub const MAX_SCOPE_TOKENS: usize = 128;

/// What a scope token applies to: one table, or every table of a schema.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeTarget {
    /// The schema name.
    pub schema: String,
    /// The table name; `None` for `*` (every table of the schema).
    pub table: Option<String>,
}

impl ScopeTarget {
    /// A target naming one table.
    pub fn table(table: &TableName) -> Self {
        ScopeTarget {
            schema: table.schema.clone(),
            table: Some(table.table.clone()),
        }
    }

    /// A target naming every table of `schema`.
    pub fn all_tables(schema: impl Into<String>) -> Self {
        ScopeTarget {
            schema: schema.into(),
            table: None,
        }
    }
}

impl fmt::Display for ScopeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table.as_deref().unwrap_or("*"))
    }
}

/// One parsed scope token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeToken {
    /// The table or tables.
    pub target: ScopeTarget,
    /// The columns; a list is only allowed on a single table.
    pub columns: ColumnSet,
    /// The actions (never empty).
    pub actions: BTreeSet<Action>,
    /// The rows.
    pub row_scope: RowScope,
}

impl fmt::Display for ScopeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.target)?;
        if let ColumnSet::Only(cols) = &self.columns {
            f.write_str("(")?;
            for (i, c) in cols.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                f.write_str(c)?;
            }
            f.write_str(")")?;
        }
        f.write_str(":")?;
        f.write_str(&format_actions(&self.actions))?;
        if self.row_scope == RowScope::Own {
            f.write_str(":own")?;
        }
        Ok(())
    }
}

impl FromStr for ScopeToken {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_token(s).map_err(|reason| ScopeError {
            token: printable(s),
            reason,
        })
    }
}

/// Canonical action list: read, create, update, delete in that order, with
/// create+update+delete written `write`.
fn format_actions(actions: &BTreeSet<Action>) -> String {
    let write = Action::WRITE.iter().all(|a| actions.contains(a));
    let mut words: Vec<&str> = Vec::new();
    if actions.contains(&Action::Read) {
        words.push("read");
    }
    if write {
        words.push("write");
    } else {
        words.extend(Action::WRITE.iter().filter(|a| actions.contains(a)).map(|a| a.as_str()));
    }
    words.join("+")
}

/// A parsed scope string: a set of scope tokens. Tokens with the same target,
/// columns and rows are merged; `Display` gives the canonical form (tokens in
/// byte order, columns sorted, `:all` omitted, `write` for
/// create+update+delete).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet {
    tokens: BTreeMap<(ScopeTarget, ColumnSet, RowScope), BTreeSet<Action>>,
}

impl ScopeSet {
    /// Parses a space-separated scope string. An empty string is an empty set
    /// (the OAuth server decides what an empty request means).
    pub fn parse(scope: &str) -> Result<Self, ScopeError> {
        if scope.len() > MAX_SCOPE_LEN {
            return Err(ScopeError {
                token: String::new(),
                reason: ScopeErrorReason::TooLong,
            });
        }
        let mut set = ScopeSet::default();
        for (n, token) in scope.split(' ').filter(|t| !t.is_empty()).enumerate() {
            if n >= MAX_SCOPE_TOKENS {
                return Err(ScopeError {
                    token: String::new(),
                    reason: ScopeErrorReason::TooManyTokens,
                });
            }
            set.insert(token.parse()?);
        }
        Ok(set)
    }

    /// Adds a token, merging its actions with a token of the same target,
    /// columns and rows.
    pub fn insert(&mut self, token: ScopeToken) {
        self.tokens
            .entry((token.target, token.columns, token.row_scope))
            .or_default()
            .extend(token.actions);
    }

    /// The tokens, in canonical order.
    pub fn tokens(&self) -> impl Iterator<Item = ScopeToken> + '_ {
        self.tokens
            .iter()
            .map(|((target, columns, row_scope), actions)| ScopeToken {
                target: target.clone(),
                columns: columns.clone(),
                actions: actions.clone(),
                row_scope: *row_scope,
            })
    }

    /// Whether the set has no token.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Expands `schema.*` to the schema's tables, checks that every schema,
    /// table and column exists, and merges the result into a grant.
    /// `schemas` looks a schema up by name (the version installed in the
    /// vault); it may return `&SchemaDef` or `Arc<SchemaDef>`.
    pub fn resolve<S, F>(&self, schemas: F) -> Result<GrantSpec, ResolveError>
    where
        F: Fn(&str) -> Option<S>,
        S: Borrow<SchemaDef>,
    {
        let mut spec = GrantSpec::new();
        for ((target, columns, row_scope), actions) in &self.tokens {
            let schema = schemas(&target.schema).ok_or_else(|| ResolveError::UnknownSchema {
                schema: target.schema.clone(),
            })?;
            let schema = schema.borrow();
            let tables: Vec<&str> = match &target.table {
                Some(t) => vec![t.as_str()],
                None => {
                    if schema.tables.is_empty() {
                        return Err(ResolveError::EmptySchema {
                            schema: target.schema.clone(),
                        });
                    }
                    schema.tables.iter().map(|t| t.name.as_str()).collect()
                }
            };
            for table in tables {
                let name = TableName::new(&target.schema, table);
                let def = schema
                    .table(table)
                    .ok_or_else(|| ResolveError::UnknownTable { table: name.clone() })?;
                if let ColumnSet::Only(cols) = columns
                    && let Some(c) = cols.iter().find(|c| def.column(c).is_none())
                {
                    return Err(ResolveError::UnknownColumn {
                        table: name,
                        column: c.clone(),
                    });
                }
                spec.insert(TablePermission {
                    table: name,
                    actions: actions.clone(),
                    columns: columns.clone(),
                    row_scope: *row_scope,
                })?;
            }
        }
        Ok(spec)
    }
}

impl fmt::Display for ScopeSet {
    /// The canonical form: canonical tokens in byte order, joined by one space.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tokens: Vec<String> = self.tokens().map(|t| t.to_string()).collect();
        tokens.sort_unstable();
        f.write_str(&tokens.join(" "))
    }
}

impl FromStr for ScopeSet {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ScopeSet::parse(s)
    }
}

impl From<&TablePermission> for ScopeToken {
    fn from(p: &TablePermission) -> Self {
        ScopeToken {
            target: ScopeTarget::table(&p.table),
            columns: p.columns.clone(),
            actions: p.actions.clone(),
            row_scope: p.row_scope,
        }
    }
}

impl From<&GrantSpec> for ScopeSet {
    fn from(spec: &GrantSpec) -> Self {
        let mut set = ScopeSet::default();
        for p in spec.permissions() {
            set.insert(ScopeToken::from(&p));
        }
        set
    }
}

/// A malformed scope token and why; the OAuth server answers it with
/// `invalid_scope`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope `{token}`: {reason}")]
pub struct ScopeError {
    /// The offending token (non-printable characters replaced, shortened).
    pub token: String,
    /// Why it is malformed.
    pub reason: ScopeErrorReason,
}

/// Why a scope token (or an `authorization_details` field) is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeErrorReason {
    /// No `:` and actions after the table.
    #[error("missing `:actions` after the table (e.g. `contacts.people:read`)")]
    MissingActions,
    /// No `.` between schema and table.
    #[error("expected `schema.table` or `schema.*`")]
    MissingTable,
    /// The schema name is not an identifier.
    #[error("`{0}` is not a valid schema name (1-63 lower-case letters, digits or `_`, starting with a letter)")]
    InvalidSchemaName(String),
    /// The table name is not an identifier.
    #[error("`{0}` is not a valid table name (1-63 lower-case letters, digits or `_`, starting with a letter, or `*`)")]
    InvalidTableName(String),
    /// A column name is not an identifier.
    #[error("`{0}` is not a valid column name (1-63 lower-case letters, digits or `_`, starting with a letter)")]
    InvalidColumnName(String),
    /// A system column is listed.
    #[error("`{0}` is a system column; it is always included and must not be listed")]
    SystemColumn(String),
    /// `()`.
    #[error("the column list is empty")]
    EmptyColumnList,
    /// A column listed twice.
    #[error("column `{0}` is listed twice")]
    DuplicateColumn(String),
    /// `(` without `)`, or text after `)`.
    #[error("the column list must be `(a,b)` right after the table name")]
    BadColumnList,
    /// Columns on `schema.*`.
    #[error("a column list needs one table, not `schema.*`")]
    ColumnsOnWildcard,
    /// `read+` or `:` with nothing after.
    #[error("an action is empty (actions are joined by `+`)")]
    EmptyAction,
    /// Not an action word.
    #[error("unknown action `{0}` (expected read, create, update, delete or write)")]
    UnknownAction(String),
    /// An action given twice (also through `write`).
    #[error("action `{0}` is given twice (`write` already means create+update+delete)")]
    DuplicateAction(String),
    /// Not `own` or `all`.
    #[error("unknown row scope `{0}` (expected own or all)")]
    UnknownRowScope(String),
    /// More than `target:actions:rows`.
    #[error("too many `:` parts (expected `table:actions` or `table:actions:own`)")]
    TooManyParts,
    /// The whole scope string is too long.
    #[error("the scope is longer than {MAX_SCOPE_LEN} bytes")]
    TooLong,
    /// The scope has too many tokens.
    #[error("the scope has more than {MAX_SCOPE_TOKENS} tokens")]
    TooManyTokens,
}

impl ScopeErrorReason {
    /// A stable code for the reason, the variant's name in snake case (e.g.
    /// `unknown_action`); `docs/scope-vectors.json` uses it.
    pub fn code(&self) -> &'static str {
        use ScopeErrorReason as R;
        match self {
            R::MissingActions => "missing_actions",
            R::MissingTable => "missing_table",
            R::InvalidSchemaName(_) => "invalid_schema_name",
            R::InvalidTableName(_) => "invalid_table_name",
            R::InvalidColumnName(_) => "invalid_column_name",
            R::SystemColumn(_) => "system_column",
            R::EmptyColumnList => "empty_column_list",
            R::DuplicateColumn(_) => "duplicate_column",
            R::BadColumnList => "bad_column_list",
            R::ColumnsOnWildcard => "columns_on_wildcard",
            R::EmptyAction => "empty_action",
            R::UnknownAction(_) => "unknown_action",
            R::DuplicateAction(_) => "duplicate_action",
            R::UnknownRowScope(_) => "unknown_row_scope",
            R::TooManyParts => "too_many_parts",
            R::TooLong => "too_long",
            R::TooManyTokens => "too_many_tokens",
        }
    }
}

/// Text safe to echo in an OAuth `error_description`: printable ASCII other
/// than `"` and `\`, at most 80 characters.
pub(crate) fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(80)
        .map(|c| {
            if (' '..='~').contains(&c) && c != '"' && c != '\\' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.chars().count() > 80 {
        out.push_str("...");
    }
    out
}

fn parse_token(token: &str) -> Result<ScopeToken, ScopeErrorReason> {
    let (head, rest) = token.split_once(':').ok_or(ScopeErrorReason::MissingActions)?;
    let mut parts = rest.split(':');
    let actions = parts.next().unwrap_or_default();
    let rows = parts.next();
    if parts.next().is_some() {
        return Err(ScopeErrorReason::TooManyParts);
    }
    let (target, columns) = match head.split_once('(') {
        None => (head, None),
        Some((target, cols)) => {
            let cols = cols
                .strip_suffix(')')
                .filter(|c| !c.contains(['(', ')']))
                .ok_or(ScopeErrorReason::BadColumnList)?;
            (target, Some(cols))
        }
    };
    if target.contains(')') {
        return Err(ScopeErrorReason::BadColumnList);
    }
    let target = parse_target(target)?;
    let columns = match columns {
        None => ColumnSet::All,
        Some(_) if target.table.is_none() => return Err(ScopeErrorReason::ColumnsOnWildcard),
        Some("") => return Err(ScopeErrorReason::EmptyColumnList),
        Some(cols) => parse_column_names(cols.split(','))?,
    };
    if actions.is_empty() {
        return Err(ScopeErrorReason::EmptyAction);
    }
    let actions = parse_action_words(actions.split('+'))?;
    let row_scope = match rows {
        None => RowScope::All,
        Some(r) => r.parse()?,
    };
    Ok(ScopeToken {
        target,
        columns,
        actions,
        row_scope,
    })
}

fn parse_target(target: &str) -> Result<ScopeTarget, ScopeErrorReason> {
    let (schema, table) = target.split_once('.').ok_or(ScopeErrorReason::MissingTable)?;
    if !is_identifier(schema) {
        return Err(ScopeErrorReason::InvalidSchemaName(printable(schema)));
    }
    let table = match table {
        "*" => None,
        t if is_identifier(t) => Some(t.to_owned()),
        t => return Err(ScopeErrorReason::InvalidTableName(printable(t))),
    };
    Ok(ScopeTarget {
        schema: schema.to_owned(),
        table,
    })
}

/// Parses `schema.table` (no wildcard) with a precise reason.
pub(crate) fn parse_table_name(s: &str) -> Result<TableName, ScopeErrorReason> {
    match parse_target(s)? {
        ScopeTarget {
            schema,
            table: Some(table),
        } => Ok(TableName::new(schema, table)),
        ScopeTarget { table: None, .. } => Err(ScopeErrorReason::InvalidTableName("*".into())),
    }
}

/// Parses action words (`write` expands), refusing unknown and repeated ones.
pub(crate) fn parse_action_words<'a>(
    words: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeSet<Action>, ScopeErrorReason> {
    let mut actions = BTreeSet::new();
    for word in words {
        if word.is_empty() {
            return Err(ScopeErrorReason::EmptyAction);
        }
        let group = action_word(word).ok_or_else(|| ScopeErrorReason::UnknownAction(printable(word)))?;
        for a in group {
            if !actions.insert(*a) {
                return Err(ScopeErrorReason::DuplicateAction(a.as_str().to_owned()));
            }
        }
    }
    Ok(actions)
}

/// Parses a non-empty list of user column names.
pub(crate) fn parse_column_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<ColumnSet, ScopeErrorReason> {
    let mut set = BTreeSet::new();
    for name in names {
        if is_system_column(name) {
            return Err(ScopeErrorReason::SystemColumn(name.to_owned()));
        }
        if !is_identifier(name) {
            return Err(ScopeErrorReason::InvalidColumnName(printable(name)));
        }
        if !set.insert(name.to_owned()) {
            return Err(ScopeErrorReason::DuplicateColumn(name.to_owned()));
        }
    }
    if set.is_empty() {
        return Err(ScopeErrorReason::EmptyColumnList);
    }
    Ok(ColumnSet::Only(set))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_action_order_and_write() {
        let s = ScopeSet::parse("a.b:delete+read+update+create").unwrap();
        assert_eq!(s.to_string(), "a.b:read+write");
        let s = ScopeSet::parse("a.b:update+create").unwrap();
        assert_eq!(s.to_string(), "a.b:create+update");
    }

    #[test]
    fn printable_replaces_unsafe_characters() {
        assert_eq!(printable("a\"b\\c\u{e9}\n"), "a?b?c??");
        assert_eq!(printable(&"x".repeat(100)).len(), 83);
    }
}
