//! Splitting a simple query into statements, and the statements this front
//! end answers itself rather than through the gateway: the probes drivers
//! send at connect time and transaction control.
//!
//! Transactions: each statement is atomic on its own and is committed when
//! it runs. `BEGIN` (`START TRANSACTION`) opens a block only as far as the
//! protocol's status goes; `COMMIT` closes it; `ROLLBACK` closes it too but
//! cannot undo the statements that ran inside it (a warning says so when
//! the block wrote anything). After a failed statement inside a block,
//! statements are refused (`25P02`) until `ROLLBACK` or `COMMIT`, as
//! Postgres does. The statements of one simple query are not one
//! transaction either: those before a failing one stay done.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::SERVER_VERSION;

/// Longest simple query (all its statements) accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 1024 * 1024;
/// Most statements one simple query may hold.
pub const MAX_STATEMENTS: usize = 256;
/// Most parameters one statement may take.
pub const MAX_PARAMETERS: usize = 1024;

/// Why a query could not be split.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// The query is longer than [`MAX_QUERY_LEN`] or holds more than
    /// [`MAX_STATEMENTS`] statements.
    #[error("{0}")]
    TooLarge(String),
    /// The query does not tokenize (an unterminated string or comment).
    #[error("syntax error: {0}")]
    Syntax(String),
}

/// The statements of `query`, each with its own text (comments and
/// whitespace around it trimmed, the `;` dropped); empty statements are
/// skipped. Semicolons inside strings, quoted names and comments do not
/// split.
pub fn split(query: &str) -> Result<Vec<&str>, SplitError> {
    if query.len() > MAX_QUERY_LEN {
        return Err(SplitError::TooLarge(format!(
            "the query is longer than {MAX_QUERY_LEN} bytes"
        )));
    }
    let tokens = tokens(query)?;
    let mut cuts: Vec<(u64, u64)> = tokens
        .iter()
        .filter(|t| t.token == Token::SemiColon)
        .map(|t| (t.span.start.line, t.span.start.column))
        .collect();
    if cuts.len() > MAX_STATEMENTS {
        return Err(SplitError::TooLarge(format!(
            "the query holds more than {MAX_STATEMENTS} statements"
        )));
    }
    cuts.reverse();
    let mut statements = Vec::new();
    let (mut line, mut column, mut start) = (1u64, 1u64, 0usize);
    for (at, c) in query.char_indices() {
        if cuts.last() == Some(&(line, column)) {
            cuts.pop();
            push_statement(&query[start..at], &mut statements);
            start = at + c.len_utf8();
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    push_statement(&query[start..], &mut statements);
    if statements.len() > MAX_STATEMENTS {
        return Err(SplitError::TooLarge(format!(
            "the query holds more than {MAX_STATEMENTS} statements"
        )));
    }
    Ok(statements)
}

fn push_statement<'a>(text: &'a str, out: &mut Vec<&'a str>) {
    let text = text.trim();
    if !text.is_empty() && !only_comments(text) {
        out.push(text);
    }
}

fn only_comments(text: &str) -> bool {
    tokens(text).is_ok_and(|t| t.iter().all(|t| matches!(t.token, Token::Whitespace(_))))
}

fn tokens(text: &str) -> Result<Vec<TokenWithSpan>, SplitError> {
    Tokenizer::new(&PostgreSqlDialect {}, text)
        .tokenize_with_location()
        .map_err(|e| SplitError::Syntax(e.message))
}

/// What a statement is, for this front end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// SQL for the gateway (`SELECT`, `INSERT`, `UPDATE`, `DELETE`, and
    /// whatever else, which the gateway refuses).
    Sql,
    /// `BEGIN`, `START TRANSACTION`.
    Begin,
    /// `COMMIT`, `END`.
    Commit,
    /// `ROLLBACK`, `ABORT`.
    Rollback,
    /// `SET [SESSION | LOCAL] name {= | TO} value`; only `application_name`
    /// is kept, the others are accepted and ignored.
    Set {
        /// The parameter, in lower case.
        name: String,
        /// Its value, unquoted.
        value: String,
    },
    /// `RESET …`, `DISCARD …`, `DEALLOCATE …`: accepted, nothing to do.
    Reset(&'static str),
    /// `SHOW name`.
    Show(String),
    /// `SELECT version()`.
    Version,
    /// A `SELECT` from `pg_catalog` or `information_schema` (psql's `\dt`,
    /// `\d`, …), answered from the confined catalog ([`crate::catalog`]).
    Catalog,
    /// `COPY (query) TO STDOUT` or `COPY schema.table [(columns)] TO
    /// STDOUT`, in the text format or CSV (`WITH (FORMAT csv, HEADER)`,
    /// `CSV HEADER`). A table is copied as `SELECT *` (or its columns).
    CopyOut {
        /// The query whose rows are copied.
        query: String,
        /// CSV rather than the text format.
        csv: bool,
        /// A CSV header line with the column names.
        header: bool,
    },
    /// `COPY schema.table [(columns)] FROM STDIN`, in the text format or
    /// CSV: one atomic insert of every row.
    CopyIn {
        /// The table, as written.
        table: String,
        /// The columns, in the data's order (`None`: every user column of
        /// the table, in its order).
        columns: Option<Vec<String>>,
        /// CSV rather than the text format.
        csv: bool,
        /// Whether the first line is a header to skip (CSV).
        header: bool,
    },
    /// A `COPY` this server does not do (a file, `BINARY`), with why.
    CopyRefused(&'static str),
}

/// Classifies one statement by its words.
pub fn classify(statement: &str) -> Statement {
    let Ok(tokens) = tokens(statement) else {
        return Statement::Sql;
    };
    let words: Vec<&Token> = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let keyword = |i: usize| match words.get(i) {
        Some(Token::Word(w)) => Some(w.keyword),
        _ => None,
    };
    let ident = |i: usize| match words.get(i) {
        Some(Token::Word(w)) => Some(w.value.to_ascii_lowercase()),
        _ => None,
    };
    match keyword(0) {
        Some(Keyword::BEGIN) => Statement::Begin,
        Some(Keyword::START) if keyword(1) == Some(Keyword::TRANSACTION) => Statement::Begin,
        Some(Keyword::COMMIT | Keyword::END) => Statement::Commit,
        Some(Keyword::ROLLBACK | Keyword::ABORT) => Statement::Rollback,
        Some(Keyword::RESET) => Statement::Reset("RESET"),
        Some(Keyword::DISCARD) => Statement::Reset("DISCARD ALL"),
        Some(Keyword::DEALLOCATE) => Statement::Reset("DEALLOCATE"),
        Some(Keyword::SHOW) => Statement::Show(words[1..].iter().map(|t| t.to_string()).collect::<String>()),
        Some(Keyword::SET) => {
            let mut i = 1;
            if matches!(keyword(i), Some(Keyword::SESSION | Keyword::LOCAL)) {
                i += 1;
            }
            let name = ident(i).unwrap_or_default();
            let value = words
                .get(i + 2..)
                .unwrap_or_default()
                .iter()
                .map(|t| match t {
                    Token::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" ");
            Statement::Set { name, value }
        }
        Some(Keyword::COPY) => copy(&tokens),
        Some(Keyword::SELECT) => {
            let rest: Vec<String> = words[1..].iter().map(|t| t.to_string().to_ascii_lowercase()).collect();
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            match rest.as_slice() {
                ["version", "(", ")"] | ["pg_catalog", ".", "version", "(", ")"] => Statement::Version,
                _ if crate::catalog::is_catalog_query(statement) => Statement::Catalog,
                _ => Statement::Sql,
            }
        }
        _ => Statement::Sql,
    }
}

/// A `COPY` statement: what it copies, and how.
fn copy(tokens: &[TokenWithSpan]) -> Statement {
    let text = |ts: &[TokenWithSpan]| ts.iter().map(|t| t.token.to_string()).collect::<String>();
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    // significant[0] is COPY.
    let Some(&first) = significant.get(1) else {
        return Statement::CopyRefused("COPY needs a query or a table");
    };
    let is_query = tokens[first].token == Token::LParen;
    let mut copy_in = None;
    let (query, mut next) = if is_query {
        let mut depth = 0usize;
        let mut close = None;
        for (i, t) in tokens.iter().enumerate().skip(first) {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(close) = close else {
            return Statement::CopyRefused("COPY's query has no closing parenthesis");
        };
        (text(&tokens[first + 1..close]).trim().to_owned(), close + 1)
    } else {
        // A table name, then an optional column list.
        let mut i = first;
        while i < tokens.len()
            && matches!(tokens[i].token, Token::Word(_) | Token::Period)
            && !matches!(&tokens[i].token, Token::Word(w) if matches!(w.keyword, Keyword::TO | Keyword::FROM))
        {
            i += 1;
        }
        let table = text(&tokens[first..i]);
        while i < tokens.len() && matches!(tokens[i].token, Token::Whitespace(_)) {
            i += 1;
        }
        let mut columns = "*".to_owned();
        let mut list = None;
        if tokens.get(i).is_some_and(|t| t.token == Token::LParen) {
            let Some(close) = tokens[i..].iter().position(|t| t.token == Token::RParen) else {
                return Statement::CopyRefused("COPY's column list has no closing parenthesis");
            };
            columns = text(&tokens[i + 1..i + close]);
            list = Some(
                tokens[i + 1..i + close]
                    .iter()
                    .filter_map(|t| match &t.token {
                        Token::Word(w) => Some(w.value.clone()),
                        _ => None,
                    })
                    .collect(),
            );
            i += close + 1;
        }
        copy_in = Some((table.trim().to_owned(), list));
        (format!("SELECT {columns} FROM {table}"), i)
    };
    let words: Vec<String> = tokens[next.min(tokens.len())..]
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .map(|t| t.token.to_string().to_ascii_lowercase())
        .collect();
    next = 0;
    let options = words.get(2..).unwrap_or_default();
    if options.iter().any(|w| w == "binary") {
        return Statement::CopyRefused("COPY in the binary format is not supported; use the text format or CSV");
    }
    match (
        words.get(next).map(String::as_str),
        words.get(next + 1).map(String::as_str),
    ) {
        (Some("to"), Some("stdout")) => {}
        (Some("from"), Some("stdin")) => {
            return match copy_in {
                Some((table, columns)) => Statement::CopyIn {
                    table,
                    columns,
                    csv: options.iter().any(|w| w == "csv"),
                    header: options.iter().any(|w| w == "header"),
                },
                None => Statement::CopyRefused("COPY … FROM STDIN takes a table, not a query"),
            };
        }
        (Some("from"), _) => return Statement::CopyRefused("COPY reads only FROM STDIN"),
        _ => return Statement::CopyRefused("COPY writes only TO STDOUT"),
    }
    Statement::CopyOut {
        query,
        csv: options.iter().any(|w| w == "csv"),
        header: options.iter().any(|w| w == "header"),
    }
}

/// The text `SELECT version()` answers.
pub fn version() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (Coffer {}, a personal data vault; not a PostgreSQL server)",
        env!("CARGO_PKG_VERSION")
    )
}

/// The value of a setting `SHOW` may read, or `None` for one this server
/// does not know. `application_name` is the session's.
pub fn setting(name: &str, application_name: &str) -> Option<String> {
    let value = match name.to_ascii_lowercase().as_str() {
        "server_version" => SERVER_VERSION,
        "server_version_num" => "160006",
        "server_encoding" | "client_encoding" => "UTF8",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "timezone" => "UTC",
        "integer_datetimes" | "standard_conforming_strings" => "on",
        "is_superuser" | "default_transaction_read_only" | "transaction_read_only" => "off",
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "search_path" => "\"$user\", public",
        "max_identifier_length" => "63",
        "lc_collate" | "lc_ctype" => "C",
        "application_name" => application_name,
        _ => return None,
    };
    Some(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_semicolons_outside_strings_and_comments() {
        let q = "SELECT 'a;b' ; SELECT \"x;y\" FROM t -- c;d\n; /* e;f */ ;; SELECT 3";
        assert_eq!(
            split(q).unwrap(),
            vec!["SELECT 'a;b'", "SELECT \"x;y\" FROM t -- c;d", "SELECT 3"]
        );
        assert_eq!(split("  ;  ").unwrap(), Vec::<&str>::new());
        assert_eq!(split("SELECT 'é;'; SELECT 2").unwrap(), vec!["SELECT 'é;'", "SELECT 2"]);
        assert!(matches!(split("SELECT 'open"), Err(SplitError::Syntax(_))));
        assert!(matches!(
            split(&"SELECT 1;".repeat(MAX_STATEMENTS + 1)),
            Err(SplitError::TooLarge(_))
        ));
    }

    #[test]
    fn recognizes_probes_and_transaction_control() {
        assert_eq!(classify("begin"), Statement::Begin);
        assert_eq!(
            classify("START TRANSACTION ISOLATION LEVEL READ COMMITTED"),
            Statement::Begin
        );
        assert_eq!(classify("COMMIT"), Statement::Commit);
        assert_eq!(classify("rollback"), Statement::Rollback);
        assert_eq!(
            classify("SET application_name = 'psql'"),
            Statement::Set {
                name: "application_name".into(),
                value: "psql".into()
            }
        );
        assert_eq!(
            classify("SET SESSION extra_float_digits TO 3"),
            Statement::Set {
                name: "extra_float_digits".into(),
                value: "3".into()
            }
        );
        assert_eq!(classify("SHOW TimeZone"), Statement::Show("TimeZone".into()));
        assert_eq!(classify("select version()"), Statement::Version);
        assert_eq!(classify("SELECT version() FROM t"), Statement::Sql);
        assert_eq!(classify("SELECT * FROM contacts.people"), Statement::Sql);
        assert_eq!(
            classify("COPY (SELECT id FROM contacts.people WHERE x = ')') TO STDOUT WITH (FORMAT csv, HEADER)"),
            Statement::CopyOut {
                query: "SELECT id FROM contacts.people WHERE x = ')'".into(),
                csv: true,
                header: true
            }
        );
        assert_eq!(
            classify("copy contacts.people (id, display_name) to stdout"),
            Statement::CopyOut {
                query: "SELECT id, display_name FROM contacts.people".into(),
                csv: false,
                header: false
            }
        );
        assert_eq!(
            classify("COPY contacts.people (id, display_name) FROM STDIN WITH (FORMAT csv, HEADER)"),
            Statement::CopyIn {
                table: "contacts.people".into(),
                columns: Some(vec!["id".into(), "display_name".into()]),
                csv: true,
                header: true
            }
        );
        assert!(matches!(
            classify("COPY contacts.people FROM '/etc/passwd'"),
            Statement::CopyRefused(_)
        ));
        assert!(matches!(
            classify("COPY contacts.people TO '/etc/passwd'"),
            Statement::CopyRefused(_)
        ));
        assert_eq!(setting("timezone", "x").as_deref(), Some("UTC"));
        assert_eq!(setting("nope", "x"), None);
    }
}
