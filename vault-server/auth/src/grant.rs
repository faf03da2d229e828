//! Grants: what one user allowed one app on one vault, as typed data.
//!
//! A [`GrantSpec`] maps each granted `(table, action)` pair to an [`Access`]:
//! the columns the action may touch and the rows it may touch. Keeping the
//! detail per pair (rather than per table) lets a grant say "read every task,
//! but update only the tasks this app created" without losing precision.
//!
//! The same data has three external forms: the scope string
//! ([`crate::scope`]), RFC 9396 `authorization_details` JSON (this module),
//! and the facts of a capability token ([`crate::token`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use coffer_core::schema::{SYSTEM_COLUMNS, SchemaDef, TableName, is_identifier};
use serde::{Deserialize, Serialize};

use crate::scope::{ScopeErrorReason, ScopeSet};

/// One of the four things an app can do to the rows of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read rows.
    Read,
    /// Insert new rows.
    Create,
    /// Change existing rows.
    Update,
    /// Delete rows.
    Delete,
}

impl Action {
    /// Every action, in canonical order.
    pub const ALL: [Action; 4] = [Action::Read, Action::Create, Action::Update, Action::Delete];
    /// The actions the word `write` stands for.
    pub const WRITE: [Action; 3] = [Action::Create, Action::Update, Action::Delete];

    /// The action's name as used in scopes, tokens and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a word that is not one of the four actions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action `{0}` (expected read, create, update or delete)")]
pub struct UnknownAction(pub String);

impl FromStr for Action {
    type Err = UnknownAction;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Action::Read),
            "create" => Ok(Action::Create),
            "update" => Ok(Action::Update),
            "delete" => Ok(Action::Delete),
            other => Err(UnknownAction(other.to_owned())),
        }
    }
}

/// The actions an action word stands for: one action, or three for `write`.
pub(crate) fn action_word(word: &str) -> Option<&'static [Action]> {
    Some(match word {
        "read" => &Action::ALL[0..1],
        "create" => &Action::ALL[1..2],
        "update" => &Action::ALL[2..3],
        "delete" => &Action::ALL[3..4],
        "write" => &Action::WRITE,
        _ => return None,
    })
}

/// Which rows of a table an action may touch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowScope {
    /// Every row of the table.
    #[default]
    All,
    /// Only the rows this app created (`_created_by` = the app).
    Own,
}

impl RowScope {
    /// The row scope's name as used in scopes, tokens and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RowScope::All => "all",
            RowScope::Own => "own",
        }
    }

    /// Whether every row allowed by `self` is also allowed by `other`.
    pub fn is_within(self, other: RowScope) -> bool {
        self == RowScope::Own || other == RowScope::All
    }

    /// The narrower of two row scopes.
    pub fn narrowest(self, other: RowScope) -> RowScope {
        if self == RowScope::Own || other == RowScope::Own {
            RowScope::Own
        } else {
            RowScope::All
        }
    }
}

impl fmt::Display for RowScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RowScope {
    type Err = ScopeErrorReason;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(RowScope::All),
            "own" => Ok(RowScope::Own),
            other => Err(ScopeErrorReason::UnknownRowScope(other.to_owned())),
        }
    }
}

/// The user-visible columns an action may touch. The system columns (`id`,
/// `_seq`, `_created_by`, …) are never listed: every granted action may see
/// them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ColumnSet {
    /// Every column of the table, including columns added later.
    All,
    /// Only these columns.
    Only(BTreeSet<String>),
}

impl ColumnSet {
    /// A set of the given columns.
    pub fn only<I, S>(columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ColumnSet::Only(columns.into_iter().map(Into::into).collect())
    }

    /// Whether the user column `column` is in the set.
    pub fn contains(&self, column: &str) -> bool {
        match self {
            ColumnSet::All => true,
            ColumnSet::Only(set) => set.contains(column),
        }
    }

    /// Whether the set lists no column at all (grants nothing).
    pub fn is_empty(&self) -> bool {
        matches!(self, ColumnSet::Only(set) if set.is_empty())
    }

    /// Whether every column of `self` is also in `other`.
    pub fn is_subset_of(&self, other: &ColumnSet) -> bool {
        match (self, other) {
            (_, ColumnSet::All) => true,
            (ColumnSet::All, ColumnSet::Only(_)) => false,
            (ColumnSet::Only(a), ColumnSet::Only(b)) => a.is_subset(b),
        }
    }

    /// The columns in both sets.
    pub fn intersect(&self, other: &ColumnSet) -> ColumnSet {
        match (self, other) {
            (ColumnSet::All, x) | (x, ColumnSet::All) => x.clone(),
            (ColumnSet::Only(a), ColumnSet::Only(b)) => ColumnSet::Only(a.intersection(b).cloned().collect()),
        }
    }
}

/// Whether `name` is one of the system columns every table carries.
pub fn is_system_column(name: &str) -> bool {
    SYSTEM_COLUMNS.contains(&name)
}

/// What one granted `(table, action)` pair may touch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Access {
    /// The columns the action may touch.
    pub columns: ColumnSet,
    /// The rows the action may touch.
    pub row_scope: RowScope,
}

impl Access {
    /// Every column of every row.
    pub fn full() -> Self {
        Access {
            columns: ColumnSet::All,
            row_scope: RowScope::All,
        }
    }

    /// Whether everything `self` allows is also allowed by `other`.
    pub fn is_within(&self, other: &Access) -> bool {
        self.columns.is_subset_of(&other.columns) && self.row_scope.is_within(other.row_scope)
    }

    /// What both allow; `None` when that is no column at all.
    pub fn intersect(&self, other: &Access) -> Option<Access> {
        let columns = self.columns.intersect(&other.columns);
        (!columns.is_empty()).then(|| Access {
            columns,
            row_scope: self.row_scope.narrowest(other.row_scope),
        })
    }
}

/// Some actions on one table, with the columns and rows they may touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablePermission {
    /// The table.
    pub table: TableName,
    /// The granted actions; never empty in a [`GrantSpec`].
    pub actions: BTreeSet<Action>,
    /// The columns the actions may touch.
    pub columns: ColumnSet,
    /// The rows the actions may touch.
    pub row_scope: RowScope,
}

impl TablePermission {
    /// A permission for `actions` on every column and row of `table`.
    pub fn new(table: TableName, actions: impl IntoIterator<Item = Action>) -> Self {
        TablePermission {
            table,
            actions: actions.into_iter().collect(),
            columns: ColumnSet::All,
            row_scope: RowScope::All,
        }
    }

    /// The same permission limited to `columns`.
    pub fn with_columns(mut self, columns: ColumnSet) -> Self {
        self.columns = columns;
        self
    }

    /// The same permission limited to `row_scope`.
    pub fn with_rows(mut self, row_scope: RowScope) -> Self {
        self.row_scope = row_scope;
        self
    }
}

/// Error for a permission that cannot be added to a grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// A permission lists no action.
    #[error("permission on `{table}` lists no action")]
    NoActions {
        /// The table.
        table: TableName,
    },
    /// A permission lists an empty column set.
    #[error("permission on `{table}` lists no column")]
    NoColumns {
        /// The table.
        table: TableName,
    },
    /// A column name is not a valid user column name.
    #[error("`{column}` is not a valid column of `{table}` (system columns are always included)")]
    InvalidColumn {
        /// The table.
        table: TableName,
        /// The column as given.
        column: String,
    },
    /// Two permissions for the same `(table, action)` differ and neither
    /// contains the other, so no single permission is their union.
    #[error(
        "conflicting permissions for `{table}:{action}`: they differ in columns or rows and neither includes the other"
    )]
    Conflict {
        /// The table.
        table: TableName,
        /// The action.
        action: Action,
    },
}

/// Error for a grant that names a schema, table or column that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No schema of that name.
    #[error("unknown schema `{schema}`")]
    UnknownSchema {
        /// The schema name.
        schema: String,
    },
    /// The schema has no table of that name.
    #[error("unknown table `{table}`")]
    UnknownTable {
        /// The table.
        table: TableName,
    },
    /// The table has no column of that name.
    #[error("unknown column `{column}` in table `{table}`")]
    UnknownColumn {
        /// The table.
        table: TableName,
        /// The column name.
        column: String,
    },
    /// A `schema.*` scope names a schema without tables.
    #[error("schema `{schema}` has no tables")]
    EmptySchema {
        /// The schema name.
        schema: String,
    },
    /// The resolved permissions conflict.
    #[error(transparent)]
    Grant(#[from] GrantError),
}

/// A set of table permissions: what a grant allows, pair by pair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantSpec {
    entries: BTreeMap<TableName, BTreeMap<Action, Access>>,
}

impl GrantSpec {
    /// An empty grant (allows nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// A grant built from permissions, merged as by [`GrantSpec::insert`].
    pub fn from_permissions(permissions: impl IntoIterator<Item = TablePermission>) -> Result<Self, GrantError> {
        let mut spec = GrantSpec::new();
        for p in permissions {
            spec.insert(p)?;
        }
        Ok(spec)
    }

    /// Adds a permission. A pair already present is kept if it includes the
    /// new one, replaced if the new one includes it, and otherwise refused
    /// with [`GrantError::Conflict`].
    pub fn insert(&mut self, permission: TablePermission) -> Result<(), GrantError> {
        let TablePermission {
            table,
            actions,
            columns,
            row_scope,
        } = permission;
        if actions.is_empty() {
            return Err(GrantError::NoActions { table });
        }
        if let ColumnSet::Only(set) = &columns {
            if set.is_empty() {
                return Err(GrantError::NoColumns { table });
            }
            if let Some(bad) = set.iter().find(|c| !is_identifier(c) || is_system_column(c)) {
                return Err(GrantError::InvalidColumn {
                    column: bad.clone(),
                    table,
                });
            }
        }
        let access = Access { columns, row_scope };
        // Check every pair first so a refused insert changes nothing.
        let existing = self.entries.get(&table);
        for action in &actions {
            if let Some(old) = existing.and_then(|m| m.get(action))
                && !access.is_within(old)
                && !old.is_within(&access)
            {
                return Err(GrantError::Conflict { table, action: *action });
            }
        }
        let map = self.entries.entry(table).or_default();
        for action in actions {
            match map.get(&action) {
                Some(old) if access.is_within(old) => {}
                _ => {
                    map.insert(action, access.clone());
                }
            }
        }
        Ok(())
    }

    /// Removes one `(table, action)` pair (a line the user unticked);
    /// returns whether it was granted.
    pub fn remove(&mut self, table: &TableName, action: Action) -> bool {
        let Some(map) = self.entries.get_mut(table) else {
            return false;
        };
        let removed = map.remove(&action).is_some();
        if map.is_empty() {
            self.entries.remove(table);
        }
        removed
    }

    /// What `action` on `table` may touch, if it is granted.
    pub fn access(&self, table: &TableName, action: Action) -> Option<&Access> {
        self.entries.get(table)?.get(&action)
    }

    /// Whether `action` on `table` is granted.
    pub fn allows(&self, table: &TableName, action: Action) -> bool {
        self.access(table, action).is_some()
    }

    /// The tables with at least one granted action.
    pub fn tables(&self) -> impl Iterator<Item = &TableName> {
        self.entries.keys()
    }

    /// Every granted pair with its access, in canonical order.
    pub fn pairs(&self) -> impl Iterator<Item = (&TableName, Action, &Access)> {
        self.entries
            .iter()
            .flat_map(|(t, m)| m.iter().map(move |(a, acc)| (t, *a, acc)))
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The grant as table permissions: per table, actions with the same
    /// columns and rows are grouped into one permission; ordered as in the
    /// canonical scope string.
    pub fn permissions(&self) -> Vec<TablePermission> {
        let mut out = Vec::new();
        for (table, map) in &self.entries {
            let mut groups: BTreeMap<&Access, BTreeSet<Action>> = BTreeMap::new();
            for (action, access) in map {
                groups.entry(access).or_default().insert(*action);
            }
            for (access, actions) in groups {
                out.push(TablePermission {
                    table: table.clone(),
                    actions,
                    columns: access.columns.clone(),
                    row_scope: access.row_scope,
                });
            }
        }
        out.sort_by_cached_key(|p| crate::scope::ScopeToken::from(p).to_string());
        out
    }

    /// What both grants allow: the pairs in both, each with the common
    /// columns and the narrower row scope. Use it to apply the lines a user
    /// kept on the consent page to what the app asked for, so that a forged
    /// form can only ever narrow.
    pub fn intersect(&self, other: &GrantSpec) -> GrantSpec {
        let mut entries = BTreeMap::new();
        for (table, action, access) in self.pairs() {
            if let Some(narrowed) = other.access(table, action).and_then(|o| access.intersect(o)) {
                entries
                    .entry(table.clone())
                    .or_insert_with(BTreeMap::new)
                    .insert(action, narrowed);
            }
        }
        GrantSpec { entries }
    }

    /// Whether everything `self` allows is also allowed by `other`.
    pub fn is_subset_of(&self, other: &GrantSpec) -> bool {
        self.pairs()
            .all(|(table, action, access)| other.access(table, action).is_some_and(|o| access.is_within(o)))
    }

    /// The pairs of `self` for which `keep` holds, with their access.
    fn filter(&self, keep: impl Fn(&TableName, Action, &Access) -> bool) -> GrantSpec {
        let mut entries: BTreeMap<TableName, BTreeMap<Action, Access>> = BTreeMap::new();
        for (table, action, access) in self.pairs().filter(|(t, a, acc)| keep(t, *a, acc)) {
            entries.entry(table.clone()).or_default().insert(action, access.clone());
        }
        GrantSpec { entries }
    }

    /// The pairs of `self` whose `(table, action)` `other` does not grant.
    pub fn without(&self, other: &GrantSpec) -> GrantSpec {
        self.filter(|table, action, _| !other.allows(table, action))
    }

    /// The pairs of `self` that `other` does not already allow (absent, or
    /// with fewer columns or rows): what a request adds to a grant.
    pub fn not_within(&self, other: &GrantSpec) -> GrantSpec {
        self.filter(|table, action, access| !other.access(table, action).is_some_and(|o| access.is_within(o)))
    }

    /// `self` with every permission of `other` added; a permission that
    /// conflicts with `self` is left out (see [`GrantSpec::insert`]).
    pub fn union(&self, other: &GrantSpec) -> GrantSpec {
        let mut out = self.clone();
        for p in other.permissions() {
            let _ = out.insert(p);
        }
        out
    }

    /// `self` with every pair of a later consent `newer` added: a pair
    /// already allowed (same or wider access) is kept; otherwise the new
    /// access replaces the old one for that pair (the latest consent
    /// decides; it never becomes a union wider than either consent).
    pub fn widen(&self, newer: &GrantSpec) -> GrantSpec {
        let mut merged = self.clone();
        for (table, action, access) in newer.not_within(self).pairs() {
            merged
                .entries
                .entry(table.clone())
                .or_default()
                .insert(action, access.clone());
        }
        merged
    }

    /// The grant as a canonical scope set.
    pub fn to_scope_set(&self) -> ScopeSet {
        ScopeSet::from(self)
    }

    /// The grant as a canonical scope string (lossless: columns and row
    /// scopes are included).
    pub fn to_scope_string(&self) -> String {
        self.to_scope_set().to_string()
    }

    /// Checks that every table and column of the grant exists in the schemas
    /// returned by `schemas` (looked up by schema name).
    pub fn check_against<S, F>(&self, schemas: F) -> Result<(), ResolveError>
    where
        F: Fn(&str) -> Option<S>,
        S: std::borrow::Borrow<SchemaDef>,
    {
        for (table, map) in &self.entries {
            let schema = schemas(&table.schema).ok_or_else(|| ResolveError::UnknownSchema {
                schema: table.schema.clone(),
            })?;
            let def = schema
                .borrow()
                .table(&table.table)
                .ok_or_else(|| ResolveError::UnknownTable { table: table.clone() })?;
            for access in map.values() {
                if let ColumnSet::Only(cols) = &access.columns
                    && let Some(c) = cols.iter().find(|c| def.column(c).is_none())
                {
                    return Err(ResolveError::UnknownColumn {
                        table: table.clone(),
                        column: c.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The grant as RFC 9396 `authorization_details` entries.
    pub fn to_authorization_details(&self) -> Vec<AuthorizationDetail> {
        self.permissions()
            .into_iter()
            .map(|p| AuthorizationDetail {
                kind: AUTHORIZATION_DETAILS_TYPE.to_owned(),
                table: p.table.to_string(),
                actions: p.actions.iter().map(|a| a.as_str().to_owned()).collect(),
                columns: match p.columns {
                    ColumnSet::All => None,
                    ColumnSet::Only(set) => Some(set.into_iter().collect()),
                },
                rows: Some(p.row_scope.as_str().to_owned()),
            })
            .collect()
    }

    /// The grant as an RFC 9396 `authorization_details` JSON array.
    pub fn to_authorization_details_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.to_authorization_details()
                .iter()
                .filter_map(|d| serde_json::to_value(d).ok())
                .collect(),
        )
    }

    /// Reads RFC 9396 `authorization_details` entries. Every entry must have
    /// type `coffer_table`; entries for the same pair merge as by
    /// [`GrantSpec::insert`].
    pub fn from_authorization_details(details: &[AuthorizationDetail]) -> Result<GrantSpec, DetailsError> {
        let mut spec = GrantSpec::new();
        for (index, d) in details.iter().enumerate() {
            let permission = d.to_permission(index)?;
            spec.insert(permission)
                .map_err(|e| DetailsError::Grant { index, source: e })?;
        }
        Ok(spec)
    }

    /// Reads an RFC 9396 `authorization_details` JSON array (the text of the
    /// request parameter).
    pub fn from_authorization_details_json(text: &str) -> Result<GrantSpec, DetailsError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| DetailsError::Json(e.to_string()))?;
        let serde_json::Value::Array(items) = value else {
            return Err(DetailsError::NotArray);
        };
        if items.len() > crate::scope::MAX_SCOPE_TOKENS {
            return Err(DetailsError::TooMany);
        }
        let mut details = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let kind = item.get("type").and_then(|t| t.as_str());
            if kind != Some(AUTHORIZATION_DETAILS_TYPE) {
                return Err(DetailsError::UnsupportedType {
                    index,
                    kind: kind.map(crate::scope::printable),
                });
            }
            let detail: AuthorizationDetail = serde_json::from_value(item).map_err(|e| DetailsError::Invalid {
                index,
                reason: e.to_string(),
            })?;
            details.push(detail);
        }
        Self::from_authorization_details(&details)
    }
}

/// Serializes as the `authorization_details` array (lossless), e.g. for the
/// control database.
impl Serialize for GrantSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_authorization_details().serialize(s)
    }
}

/// Reads the `authorization_details` array form, with the same checks as
/// [`GrantSpec::from_authorization_details`].
impl<'de> Deserialize<'de> for GrantSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let details = Vec::<AuthorizationDetail>::deserialize(d)?;
        GrantSpec::from_authorization_details(&details).map_err(serde::de::Error::custom)
    }
}

/// The RFC 9396 `type` of a Coffer table permission.
pub const AUTHORIZATION_DETAILS_TYPE: &str = "coffer_table";

/// One RFC 9396 `authorization_details` entry of type `coffer_table`:
/// `{"type":"coffer_table","table":"contacts.people","actions":["read"],
/// "columns":["name"],"rows":"own"}`. `columns` absent = every column;
/// `rows` absent = `all`; `actions` may use `write`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationDetail {
    /// Always `coffer_table`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The table, `schema.table`.
    pub table: String,
    /// The actions: `read`, `create`, `update`, `delete`, `write`.
    pub actions: Vec<String>,
    /// The columns; absent means every column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// `own` or `all`; absent means `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<String>,
}

impl AuthorizationDetail {
    fn to_permission(&self, index: usize) -> Result<TablePermission, DetailsError> {
        let invalid = |reason: ScopeErrorReason| DetailsError::Field { index, reason };
        if self.kind != AUTHORIZATION_DETAILS_TYPE {
            return Err(DetailsError::UnsupportedType {
                index,
                kind: Some(crate::scope::printable(&self.kind)),
            });
        }
        let table = crate::scope::parse_table_name(&self.table).map_err(invalid)?;
        if self.actions.is_empty() {
            return Err(invalid(ScopeErrorReason::EmptyAction));
        }
        let actions = crate::scope::parse_action_words(self.actions.iter().map(String::as_str)).map_err(invalid)?;
        let columns = match &self.columns {
            None => ColumnSet::All,
            Some(cols) => crate::scope::parse_column_names(cols.iter().map(String::as_str)).map_err(invalid)?,
        };
        let row_scope = match &self.rows {
            None => RowScope::All,
            Some(r) => r.parse().map_err(invalid)?,
        };
        Ok(TablePermission {
            table,
            actions,
            columns,
            row_scope,
        })
    }
}

/// Error for `authorization_details` that cannot be read; the OAuth server
/// answers it with `invalid_authorization_details`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetailsError {
    /// Not JSON.
    #[error("authorization_details is not valid JSON: {0}")]
    Json(String),
    /// JSON, but not an array.
    #[error("authorization_details must be a JSON array")]
    NotArray,
    /// More entries than allowed.
    #[error("authorization_details has too many entries")]
    TooMany,
    /// An entry's type is missing or not `coffer_table`.
    #[error("authorization_details[{index}]: unsupported type {} (expected `coffer_table`)", kind.as_deref().map(|k| format!("`{k}`")).unwrap_or_else(|| "(missing)".into()))]
    UnsupportedType {
        /// Position of the entry.
        index: usize,
        /// The type given, if any.
        kind: Option<String>,
    },
    /// An entry has the wrong shape (missing or unknown field, wrong JSON type).
    #[error("authorization_details[{index}]: {reason}")]
    Invalid {
        /// Position of the entry.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A field's value is not valid.
    #[error("authorization_details[{index}]: {reason}")]
    Field {
        /// Position of the entry.
        index: usize,
        /// Why.
        reason: ScopeErrorReason,
    },
    /// The entries conflict.
    #[error("authorization_details[{index}]: {source}")]
    Grant {
        /// Position of the entry.
        index: usize,
        /// Why.
        source: GrantError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TableName {
        s.parse().unwrap()
    }

    #[test]
    fn insert_merges_dominated_pairs_and_refuses_conflicts() {
        let mut g = GrantSpec::new();
        g.insert(TablePermission::new(t("tasks.items"), [Action::Read]).with_columns(ColumnSet::only(["title"])))
            .unwrap();
        // Wider replaces narrower.
        g.insert(TablePermission::new(t("tasks.items"), [Action::Read]))
            .unwrap();
        assert_eq!(g.access(&t("tasks.items"), Action::Read), Some(&Access::full()));
        // Narrower is absorbed.
        g.insert(TablePermission::new(t("tasks.items"), [Action::Read]).with_rows(RowScope::Own))
            .unwrap();
        assert_eq!(g.access(&t("tasks.items"), Action::Read), Some(&Access::full()));
        // Neither includes the other.
        let mut h = GrantSpec::new();
        h.insert(TablePermission::new(t("tasks.items"), [Action::Update]).with_rows(RowScope::Own))
            .unwrap();
        let err = h
            .insert(
                TablePermission::new(t("tasks.items"), [Action::Update, Action::Read])
                    .with_columns(ColumnSet::only(["title"])),
            )
            .unwrap_err();
        assert_eq!(
            err,
            GrantError::Conflict {
                table: t("tasks.items"),
                action: Action::Update
            }
        );
        // The refused insert changed nothing.
        assert!(!h.allows(&t("tasks.items"), Action::Read));
    }

    #[test]
    fn insert_refuses_invalid_permissions() {
        let mut g = GrantSpec::new();
        assert!(matches!(
            g.insert(TablePermission::new(t("a.b"), [])),
            Err(GrantError::NoActions { .. })
        ));
        assert!(matches!(
            g.insert(
                TablePermission::new(t("a.b"), [Action::Read]).with_columns(ColumnSet::only(Vec::<String>::new()))
            ),
            Err(GrantError::NoColumns { .. })
        ));
        assert!(matches!(
            g.insert(TablePermission::new(t("a.b"), [Action::Read]).with_columns(ColumnSet::only(["_seq"]))),
            Err(GrantError::InvalidColumn { .. })
        ));
        assert!(g.is_empty());
    }

    #[test]
    fn permissions_group_actions_with_equal_access() {
        let g = GrantSpec::from_permissions([
            TablePermission::new(t("tasks.items"), [Action::Read]),
            TablePermission::new(t("tasks.items"), [Action::Update, Action::Delete]).with_rows(RowScope::Own),
        ])
        .unwrap();
        let perms = g.permissions();
        assert_eq!(perms.len(), 2);
        assert_eq!(g.to_scope_string(), "tasks.items:read tasks.items:update+delete:own");
    }

    fn spec(s: &str) -> GrantSpec {
        let mut g = GrantSpec::new();
        for t in ScopeSet::parse(s).unwrap().tokens() {
            let table = TableName {
                schema: t.target.schema.clone(),
                table: t.target.table.clone().unwrap(),
            };
            g.insert(TablePermission {
                table,
                actions: t.actions,
                columns: t.columns,
                row_scope: t.row_scope,
            })
            .unwrap();
        }
        g
    }

    #[test]
    fn widen_keeps_wider_pairs_and_takes_the_latest_consent_otherwise() {
        let old = spec("a.t:read a.u(x):read:own");
        // Within: unchanged.
        assert_eq!(old.widen(&spec("a.t(y):read:own")), old);
        // New pair added; a pair that neither includes is replaced.
        let merged = old.widen(&spec("a.u(z):read a.v:create"));
        assert_eq!(merged.to_scope_string(), "a.t:read a.u(z):read a.v:create");
        // not_within lists only what is new.
        assert_eq!(
            spec("a.t:read+create a.u(x):read:own")
                .not_within(&old)
                .to_scope_string(),
            "a.t:create"
        );
        assert_eq!(old.not_within(&GrantSpec::new()), old);
    }

    #[test]
    fn row_scope_and_columns_lattice() {
        assert!(RowScope::Own.is_within(RowScope::All));
        assert!(!RowScope::All.is_within(RowScope::Own));
        assert_eq!(RowScope::All.narrowest(RowScope::Own), RowScope::Own);
        let ab = ColumnSet::only(["a", "b"]);
        let bc = ColumnSet::only(["b", "c"]);
        assert_eq!(ab.intersect(&bc), ColumnSet::only(["b"]));
        assert_eq!(ColumnSet::All.intersect(&ab), ab);
        assert!(ab.is_subset_of(&ColumnSet::All));
        assert!(!ColumnSet::All.is_subset_of(&ab));
        assert!(ColumnSet::only(["a"]).intersect(&ColumnSet::only(["c"])).is_empty());
    }
}
