//! Typed tables: the rows API (`/v1/tables/{table}/rows`) over the row types
//! `coffer codegen --lang rust` writes.

use std::fmt;
use std::marker::PhantomData;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{Client, decode, pct, with_query};
use crate::error::Result;

/// A row type of one table: what `coffer codegen --lang rust` writes for a
/// table (e.g. `ContactsPeople`), made known to the SDK with
/// [`tables!`](crate::tables).
pub trait Table: DeserializeOwned {
    /// The table's name, `schema.table`.
    const NAME: &'static str;
}

/// Implements [`Table`] for generated row types, from their `TABLE`
/// constant:
///
/// ```ignore
/// mod schemas { include!("schemas.rs"); } // coffer codegen --lang rust --out src/schemas.rs
/// coffer_sdk::tables!(schemas::ContactsPeople, schemas::TasksItems);
/// ```
#[macro_export]
macro_rules! tables {
    ($($row:ty),+ $(,)?) => {
        $(
            impl $crate::Table for $row {
                const NAME: &'static str = <$row>::TABLE;
            }
        )+
    };
}

/// The rows API of one table, rows read as `R`.
pub struct TableClient<R> {
    client: Client,
    name: String,
    _rows: PhantomData<fn() -> R>,
}

impl<R> Clone for TableClient<R> {
    fn clone(&self) -> Self {
        TableClient {
            client: self.client.clone(),
            name: self.name.clone(),
            _rows: PhantomData,
        }
    }
}

impl<R> fmt::Debug for TableClient<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableClient").field("table", &self.name).finish()
    }
}

/// A list answer: one page of rows and where the next one starts.
#[derive(Debug, Clone, Deserialize)]
#[serde(bound(deserialize = "R: DeserializeOwned"))]
pub struct Page<R> {
    /// The page's rows.
    pub rows: Vec<R>,
    /// The cursor of the next page (`None` on the last page).
    pub next_cursor: Option<String>,
}

/// One change of a batch update ([`TableClient::update_many`]).
#[derive(Debug, Clone, Serialize)]
pub struct RowChange<P> {
    /// The row's id.
    pub id: String,
    /// The columns to set (a generated `…Patch`, or any JSON object).
    pub set: P,
    /// Apply only if the row's `_seq` is this (else the whole batch is
    /// refused with `409 conflict`); `None`: last write wins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub if_seq: Option<i64>,
}

impl<P> RowChange<P> {
    /// A change of row `id` setting `set`, whatever its version.
    pub fn new(id: impl Into<String>, set: P) -> Self {
        RowChange {
            id: id.into(),
            set,
            if_seq: None,
        }
    }

    /// The same change, only if the row is still at `seq`.
    pub fn if_seq(mut self, seq: i64) -> Self {
        self.if_seq = Some(seq);
        self
    }
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "R: DeserializeOwned"))]
struct Rows<R> {
    rows: Vec<R>,
}

impl<R: DeserializeOwned> TableClient<R> {
    pub(crate) fn new(client: Client, name: &str) -> Self {
        TableClient {
            client,
            name: name.to_owned(),
            _rows: PhantomData,
        }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn rows_path(&self) -> String {
        format!("/v1/tables/{}/rows", pct(&self.name))
    }

    fn row_path(&self, id: &str) -> String {
        format!("/v1/tables/{}/rows/{}", pct(&self.name), pct(id))
    }

    /// A listing of the table's rows: add filters, `select`, `order`,
    /// `limit` and a cursor, then fetch a [page](Query::page) or
    /// [every row](Query::all).
    pub fn query(&self) -> Query<R> {
        Query {
            table: self.clone(),
            params: Vec::new(),
        }
    }

    /// One row by id (`404 row-not-found` when there is none the token may
    /// read).
    pub async fn get(&self, id: &str) -> Result<R> {
        self.client.call(Method::GET, &self.row_path(id), None).await
    }

    /// Inserts one row (a generated `…Insert`, or any JSON object); the
    /// row as stored.
    pub async fn insert<I: Serialize + ?Sized>(&self, row: &I) -> Result<R> {
        let body = serde_json::to_value(row)?;
        self.client.call(Method::POST, &self.rows_path(), Some(&body)).await
    }

    /// Inserts several rows at once: all of them or none.
    pub async fn insert_many<I: Serialize>(&self, rows: &[I]) -> Result<Vec<R>> {
        let body = serde_json::to_value(rows)?;
        let answer: Rows<R> = self.client.call(Method::POST, &self.rows_path(), Some(&body)).await?;
        Ok(answer.rows)
    }

    /// Changes some columns of row `id` (a generated `…Patch`: `None`
    /// leaves a column, `Some(None)` clears it); the row after the change.
    pub async fn update<P: Serialize + ?Sized>(&self, id: &str, patch: &P) -> Result<R> {
        let body = serde_json::to_value(patch)?;
        self.client.call(Method::PATCH, &self.row_path(id), Some(&body)).await
    }

    /// Like [`update`](Self::update), only if the row's `_seq` is still
    /// `seq`; otherwise `409 conflict` whose problem carries the row as it
    /// is now ([`Error::conflict_row`](crate::Error::conflict_row)).
    pub async fn update_if_seq<P: Serialize + ?Sized>(&self, id: &str, patch: &P, seq: i64) -> Result<R> {
        let body = serde_json::to_value(patch)?;
        let path = format!("{}?if_seq={seq}", self.row_path(id));
        self.client.call(Method::PATCH, &path, Some(&body)).await
    }

    /// Changes several rows at once (`PATCH` on the table's rows): every
    /// change applies or none does. The rows after the change, in order.
    pub async fn update_many<P: Serialize>(&self, changes: &[RowChange<P>]) -> Result<Vec<R>> {
        let body = serde_json::to_value(changes)?;
        let answer: Rows<R> = self.client.call(Method::PATCH, &self.rows_path(), Some(&body)).await?;
        Ok(answer.rows)
    }

    /// Deletes row `id`.
    pub async fn delete(&self, id: &str) -> Result<()> {
        self.client.send(Method::DELETE, &self.row_path(id), None).await?;
        Ok(())
    }

    /// Deletes row `id` only if its `_seq` is still `seq` (else `409
    /// conflict` with the row as it is now).
    pub async fn delete_if_seq(&self, id: &str, seq: i64) -> Result<()> {
        let path = format!("{}?if_seq={seq}", self.row_path(id));
        self.client.send(Method::DELETE, &path, None).await?;
        Ok(())
    }
}

/// A filter's test, as in the rows API's grammar (`col=op.value`).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `eq.v`: equal to `v`.
    Eq(String),
    /// `neq.v`: not equal (never matches a null).
    Neq(String),
    /// `gt.v`: greater than.
    Gt(String),
    /// `gte.v`: greater or equal.
    Gte(String),
    /// `lt.v`: less than.
    Lt(String),
    /// `lte.v`: less or equal.
    Lte(String),
    /// `like.pat`: `*` or `%` match any run of characters, `_` one.
    Like(String),
    /// `ilike.pat`: like `like`, ignoring case.
    ILike(String),
    /// `in.(a,b,…)`: one of the values.
    In(Vec<String>),
    /// `is.null`.
    IsNull,
    /// `is.true`.
    IsTrue,
    /// `is.false`.
    IsFalse,
    /// `not.…`: the negation of a test.
    Not(Box<Filter>),
}

impl Filter {
    /// `not.` this test.
    pub fn negated(self) -> Filter {
        Filter::Not(Box::new(self))
    }

    /// The filter's value in the query string (`eq.Ada`, `in.("a","b")`).
    pub fn to_param(&self) -> String {
        match self {
            Filter::Eq(v) => format!("eq.{v}"),
            Filter::Neq(v) => format!("neq.{v}"),
            Filter::Gt(v) => format!("gt.{v}"),
            Filter::Gte(v) => format!("gte.{v}"),
            Filter::Lt(v) => format!("lt.{v}"),
            Filter::Lte(v) => format!("lte.{v}"),
            Filter::Like(v) => format!("like.{v}"),
            Filter::ILike(v) => format!("ilike.{v}"),
            Filter::In(values) => {
                // Every value quoted, `"` and `\` escaped: any text is safe.
                let quoted: Vec<String> = values
                    .iter()
                    .map(|v| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                    .collect();
                format!("in.({})", quoted.join(","))
            }
            Filter::IsNull => "is.null".into(),
            Filter::IsTrue => "is.true".into(),
            Filter::IsFalse => "is.false".into(),
            Filter::Not(inner) => format!("not.{}", inner.to_param()),
        }
    }
}

/// A sort direction of [`Query::order`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Ascending, nulls last.
    Asc,
    /// Descending, nulls first.
    Desc,
}

/// A listing of a table's rows being built; see the data API guide for the
/// grammar it sends.
pub struct Query<R> {
    table: TableClient<R>,
    params: Vec<(String, String)>,
}

impl<R> Clone for Query<R> {
    fn clone(&self) -> Self {
        Query {
            table: self.table.clone(),
            params: self.params.clone(),
        }
    }
}

impl<R> fmt::Debug for Query<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("table", &self.table.name)
            .field("params", &self.params)
            .finish()
    }
}

impl<R: DeserializeOwned> Query<R> {
    /// Adds a filter on `column` (several filters must all hold; the same
    /// column twice makes a range).
    pub fn filter(mut self, column: &str, filter: Filter) -> Self {
        self.params.push((column.to_owned(), filter.to_param()));
        self
    }

    /// `column = value`.
    pub fn eq(self, column: &str, value: impl ToString) -> Self {
        self.filter(column, Filter::Eq(value.to_string()))
    }

    /// Only these columns (`id` is always included). Rows must then be
    /// read as a type with just those fields: see [`page_as`](Self::page_as).
    pub fn select(mut self, columns: &[&str]) -> Self {
        self.params.retain(|(k, _)| k != "select");
        self.params.push(("select".into(), columns.join(",")));
        self
    }

    /// Sorts by `column` (call again for further keys); `id` breaks ties.
    pub fn order(mut self, column: &str, order: Order) -> Self {
        let key = match order {
            Order::Asc => format!("{column}.asc"),
            Order::Desc => format!("{column}.desc"),
        };
        match self.params.iter_mut().find(|(k, _)| k == "order") {
            Some((_, keys)) => {
                keys.push(',');
                keys.push_str(&key);
            }
            None => self.params.push(("order".into(), key)),
        }
        self
    }

    /// At most `n` rows per page (1 to 1000; default 100).
    pub fn limit(mut self, n: usize) -> Self {
        self.params.retain(|(k, _)| k != "limit");
        self.params.push(("limit".into(), n.to_string()));
        self
    }

    /// Starts at a page's [`next_cursor`](Page::next_cursor) (with the same
    /// filters and order).
    pub fn cursor(mut self, cursor: &str) -> Self {
        self.params.retain(|(k, _)| k != "cursor");
        self.params.push(("cursor".into(), cursor.to_owned()));
        self
    }

    /// The path and query this listing sends.
    pub fn path(&self) -> String {
        with_query(&self.table.rows_path(), &self.params)
    }

    /// One page of rows.
    pub async fn page(&self) -> Result<Page<R>> {
        self.page_as().await
    }

    /// One page of rows read as `T` (for a `select` of some columns).
    pub async fn page_as<T: DeserializeOwned>(&self) -> Result<Page<T>> {
        let (_, bytes) = self.table.client.send(Method::GET, &self.path(), None).await?;
        decode(&bytes)
    }

    /// Every row, following `next_cursor` page after page.
    pub async fn all(&self) -> Result<Vec<R>> {
        self.all_as().await
    }

    /// Every row read as `T`, following `next_cursor` page after page.
    pub async fn all_as<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        let mut rows = Vec::new();
        let mut query = self.clone();
        loop {
            let page: Page<T> = query.page_as().await?;
            rows.extend(page.rows);
            match page.next_cursor {
                Some(cursor) => query = query.cursor(&cursor),
                None => return Ok(rows),
            }
        }
    }
}

/// A row of any table as JSON (for [`Client::table_named`]).
pub type JsonRow = Value;
