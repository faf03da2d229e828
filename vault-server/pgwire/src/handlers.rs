//! The simple and extended query protocols over the gateway: each
//! statement is classified ([`crate::statements`]), the probes and
//! transaction control are answered here, and everything else goes through
//! [`Gateway::run`](coffer_gateway::Gateway::run) with the session's token.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::BytesMut;
use coffer_gateway::sql::{self, Described, SqlBatches};
use coffer_gateway::{GatewayError, Operation};
use datafusion::common::ScalarValue;
use futures::{Sink, SinkExt, stream};
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, DataRowEncoder, DescribePortalResponse,
    DescribeStatementResponse, FieldFormat, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::CopyData;
use pgwire::messages::response::{NoticeResponse, TransactionStatus};

use crate::catalog::CatalogRows;
use crate::column_names::postgres_names;
use crate::connection::Connection;
use crate::errors::{ERROR, FATAL, info, statement_error, wire};
use crate::statements::{self, MAX_PARAMETERS, SplitError, Statement};
use crate::types::{cell, parameter, pg_type, pg_type_of};

/// The handlers of one connection.
pub(crate) struct Handlers {
    pub connection: Arc<Connection>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.connection.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.connection.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.connection.clone()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.connection.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(DefaultCancelHandler::new(self.connection.shared.cancels.clone()))
    }
}

/// A statement of the extended protocol, as parsed.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    sql: String,
    statement: Statement,
    /// Its parameters' and result's types, once described.
    described: Arc<Mutex<Option<Arc<Description>>>>,
}

/// The parameter types and result columns of a statement.
#[derive(Debug)]
pub(crate) struct Description {
    params: Vec<Type>,
    /// `None`: the statement returns no rows.
    columns: Option<Vec<(String, Type)>>,
}

/// Splits nothing: the extended protocol takes one statement per `Parse`.
pub(crate) struct Parser;

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, _client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if types.len() > MAX_PARAMETERS {
            return Err(too_many_parameters());
        }
        let statements = statements::split(sql).map_err(|e| split_error(&e))?;
        match statements.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(Prepared {
                sql: (*one).to_owned(),
                statement: statements::classify(one),
                described: Arc::default(),
            })),
            _ => Err(wire(
                ERROR,
                "42601",
                "cannot insert multiple commands into a prepared statement",
            )),
        }
    }

    fn get_parameter_types(&self, _stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(Vec::new())
    }

    fn get_result_schema(&self, _stmt: &Prepared, _format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        Ok(Vec::new())
    }
}

fn too_many_parameters() -> PgWireError {
    wire(
        ERROR,
        "54000",
        format!("a statement may take at most {MAX_PARAMETERS} parameters"),
    )
}

fn split_error(e: &SplitError) -> PgWireError {
    PgWireError::UserError(Box::new(split_info(e)))
}

fn split_info(e: &SplitError) -> ErrorInfo {
    match e {
        SplitError::TooLarge(m) => info(ERROR, "54000", m.clone()),
        SplitError::Syntax(m) => info(ERROR, "42601", format!("syntax error: {m}")),
    }
}

/// The format of column (or parameter) `i` of `format`, or a protocol
/// error when the client gave a format code list of the wrong length.
fn format_of(format: &Format, i: usize) -> PgWireResult<FieldFormat> {
    match format {
        Format::UnifiedText => Ok(FieldFormat::Text),
        Format::UnifiedBinary => Ok(FieldFormat::Binary),
        Format::Individual(codes) => codes
            .get(i)
            .map(|c| FieldFormat::from(*c))
            .ok_or_else(|| wire(ERROR, "08P01", "the message has fewer format codes than values")),
    }
}

/// Rows of a read, encoded for the wire in the formats asked for.
fn rows(sql_text: &str, result: &SqlBatches, format: &Format) -> PgWireResult<QueryResponse> {
    let planned = result.schema.fields().iter().map(|f| f.name().clone()).collect();
    let names = postgres_names(sql_text, planned);
    let mut fields = Vec::with_capacity(names.len());
    for (i, (f, name)) in result.schema.fields().iter().zip(names).enumerate() {
        fields.push(FieldInfo::new(name, None, None, pg_type(f), format_of(format, i)?));
    }
    let fields = Arc::new(fields);
    let mut encoder = DataRowEncoder::new(fields.clone());
    let mut out = Vec::with_capacity(usize::try_from(result.row_count).unwrap_or(0));
    for batch in &result.batches {
        for row in 0..batch.num_rows() {
            for column in batch.columns() {
                encoder.encode_field(&cell(column, row))?;
            }
            out.push(Ok(encoder.take_row()));
        }
    }
    Ok(QueryResponse::new(fields, stream::iter(out)))
}

/// Rows of a read as `COPY … TO STDOUT` data, in the text format or CSV.
fn copy_rows(result: &SqlBatches, csv: bool, header: bool) -> PgWireResult<CopyResponse> {
    let fields: Vec<FieldInfo> = result
        .schema
        .fields()
        .iter()
        .map(|f| FieldInfo::new(f.name().clone(), None, None, pg_type(f), FieldFormat::Text))
        .collect();
    let columns = fields.len();
    let fields = Arc::new(fields);
    let mut encoder = if csv {
        CopyEncoder::new_csv(fields.clone(), CopyCsvOptions::default())
    } else {
        CopyEncoder::new_text(fields.clone(), CopyTextOptions::default())
    };
    let mut head = BytesMut::new();
    if csv && header {
        let names: Vec<String> = fields
            .iter()
            .map(|f| {
                let name = f.name();
                if name.contains([',', '"', '\n', '\r']) {
                    format!("\"{}\"", name.replace('"', "\"\""))
                } else {
                    name.to_owned()
                }
            })
            .collect();
        head.extend_from_slice(names.join(",").as_bytes());
        head.extend_from_slice(b"\n");
    }
    let mut out = Vec::with_capacity(usize::try_from(result.row_count).unwrap_or(0));
    for batch in &result.batches {
        for row in 0..batch.num_rows() {
            for column in batch.columns() {
                encoder.encode_field(&cell(column, row))?;
            }
            let data = encoder.take_copy();
            if head.is_empty() {
                out.push(Ok(data));
            } else {
                // The header goes with the first row, so that the count
                // `COPY n` counts rows only.
                head.extend_from_slice(&data.data);
                out.push(Ok(CopyData::new(head.split().freeze())));
            }
        }
    }
    if !head.is_empty() {
        out.push(Ok(CopyData::new(head.freeze())));
    }
    Ok(CopyResponse::new(0, columns, stream::iter(out)))
}

/// One text column with one row per value.
fn text_rows(name: &str, values: Vec<String>) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(vec![FieldInfo::new(
        name.to_owned(),
        None,
        None,
        Type::TEXT,
        FieldFormat::Text,
    )]);
    let mut encoder = DataRowEncoder::new(fields.clone());
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        encoder.encode_field(&value)?;
        out.push(Ok(encoder.take_row()));
    }
    Ok(QueryResponse::new(fields, stream::iter(out)))
}

/// A catalog query's rows, every column `text`.
fn catalog_rows(result: CatalogRows, format: &Format) -> PgWireResult<QueryResponse> {
    let mut fields = Vec::with_capacity(result.columns.len());
    for (i, name) in result.columns.into_iter().enumerate() {
        fields.push(FieldInfo::new(name, None, None, Type::TEXT, format_of(format, i)?));
    }
    let fields = Arc::new(fields);
    let mut encoder = DataRowEncoder::new(fields.clone());
    let mut out = Vec::with_capacity(result.rows.len());
    for row in result.rows {
        for value in row {
            encoder.encode_field(&value)?;
        }
        out.push(Ok(encoder.take_row()));
    }
    Ok(QueryResponse::new(fields, stream::iter(out)))
}

/// What a gateway write answers.
fn write_tag(result: &SqlBatches) -> Tag {
    let rows = usize::try_from(result.row_count).unwrap_or(usize::MAX);
    match result.kind {
        Operation::Insert => Tag::new("INSERT").with_oid(0).with_rows(rows),
        Operation::Update => Tag::new("UPDATE").with_rows(rows),
        Operation::Delete => Tag::new("DELETE").with_rows(rows),
        Operation::Read | Operation::Describe => Tag::new("SELECT").with_rows(rows),
    }
}

fn no_session() -> PgWireError {
    wire(FATAL, "08P01", "the session is not authenticated")
}

impl Connection {
    /// Checks the session's token (expiry, revocation) without running
    /// anything: statements this front end answers itself still end a
    /// session whose token is no longer valid.
    async fn check_token(&self) -> PgWireResult<()> {
        let session = self.session().ok_or_else(no_session)?;
        match self.gateway().authenticate(&session.credentials).await {
            Ok(_) => Ok(()),
            Err(e @ GatewayError::InvalidToken { .. }) => Err(PgWireError::UserError(Box::new(statement_error(&e)))),
            Err(e) => Err(PgWireError::UserError(Box::new(statement_error(&e)))),
        }
    }

    /// A gateway refusal as a statement's answer; an invalid token ends
    /// the session.
    fn refusal(e: &GatewayError) -> PgWireResult<Response> {
        let info = statement_error(e);
        if info.is_fatal() {
            Err(PgWireError::UserError(Box::new(info)))
        } else {
            Ok(Response::Error(Box::new(info)))
        }
    }

    /// Runs one statement. `Err` only for what ends the session.
    async fn run<C>(
        &self,
        client: &mut C,
        status: TransactionStatus,
        sql_text: &str,
        statement: &Statement,
        params: &[ScalarValue],
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.session().ok_or_else(no_session)?;
        if status == TransactionStatus::Error && !matches!(statement, Statement::Commit | Statement::Rollback) {
            self.check_token().await?;
            return Ok(Response::Error(Box::new(info(
                ERROR,
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            ))));
        }
        match statement {
            Statement::Sql => {
                let served = self
                    .gateway()
                    .run(
                        &session.credentials,
                        sql::kind_of(sql_text),
                        Vec::new(),
                        |caller| async move { sql::execute_batches(&caller, sql_text, params).await },
                    )
                    .await;
                match served.result {
                    Ok(result) if result.kind == Operation::Read => {
                        Ok(Response::Query(rows(sql_text, &result, format)?))
                    }
                    Ok(result) => {
                        if status == TransactionStatus::Transaction {
                            self.set_wrote(true);
                        }
                        Ok(Response::Execution(write_tag(&result)))
                    }
                    Err(e) => Self::refusal(&e),
                }
            }
            Statement::Begin => {
                self.check_token().await?;
                if status == TransactionStatus::Idle {
                    self.set_wrote(false);
                }
                Ok(Response::TransactionStart(Tag::new("BEGIN")))
            }
            Statement::Commit => {
                self.check_token().await?;
                self.set_wrote(false);
                let tag = if status == TransactionStatus::Error {
                    "ROLLBACK"
                } else {
                    "COMMIT"
                };
                Ok(Response::TransactionEnd(Tag::new(tag)))
            }
            Statement::Rollback => {
                self.check_token().await?;
                if self.wrote() && status != TransactionStatus::Idle {
                    let mut notice = info(
                        "WARNING",
                        "01000",
                        "ROLLBACK does not undo the statements of this block: each statement was committed when it ran",
                    );
                    notice.hint = Some("see the pgwire guide: each statement is atomic on its own".into());
                    client
                        .send(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(notice)))
                        .await?;
                }
                self.set_wrote(false);
                Ok(Response::TransactionEnd(Tag::new("ROLLBACK")))
            }
            Statement::Set { name, value } => {
                self.check_token().await?;
                if name == "application_name" {
                    *session.application_name.lock().expect("application name") = value.clone();
                }
                Ok(Response::Execution(Tag::new("SET")))
            }
            Statement::Reset(tag) => {
                self.check_token().await?;
                Ok(Response::Execution(Tag::new(tag)))
            }
            Statement::Show(name) => {
                self.check_token().await?;
                let application_name = session.application_name.lock().expect("application name").clone();
                match statements::setting(name, &application_name) {
                    Some(value) => Ok(Response::Query(text_rows(&name.to_ascii_lowercase(), vec![value])?)),
                    None => Ok(Response::Error(Box::new(info(
                        ERROR,
                        "42704",
                        format!("unrecognized configuration parameter \"{name}\""),
                    )))),
                }
            }
            Statement::Version => {
                self.check_token().await?;
                Ok(Response::Query(text_rows("version", vec![statements::version()])?))
            }
            Statement::Catalog => {
                let served = self
                    .gateway()
                    .run(&session.credentials, Operation::Read, Vec::new(), |caller| async move {
                        crate::catalog::answer(&caller, sql_text).await
                    })
                    .await;
                match served.result {
                    Ok(result) => Ok(Response::Query(catalog_rows(result, format)?)),
                    Err(e) => Self::refusal(&e),
                }
            }
            Statement::CopyOut { query, csv, header } => {
                let query = query.as_str();
                let served = self
                    .gateway()
                    .run(&session.credentials, Operation::Read, Vec::new(), |caller| async move {
                        let result = sql::execute_batches(&caller, query, params).await?;
                        if result.kind != Operation::Read {
                            return Err(GatewayError::InvalidSql(
                                "COPY (…) TO STDOUT takes a SELECT; run writes as statements of their own".into(),
                            ));
                        }
                        Ok(result)
                    })
                    .await;
                match served.result {
                    Ok(result) => Ok(Response::CopyOut(copy_rows(&result, *csv, *header)?)),
                    Err(e) => Self::refusal(&e),
                }
            }
            Statement::CopyIn {
                table,
                columns,
                csv,
                header,
            } => {
                let caller = match self.gateway().authenticate(&session.credentials).await {
                    Ok(caller) => caller,
                    Err(e) => return Self::refusal(&e),
                };
                match crate::copy_in::start(&caller, table, columns.as_deref(), *csv, *header).await {
                    Ok(pending) => {
                        let width = pending.width();
                        *self.copy_in.lock().expect("copy in") = Some(pending);
                        Ok(Response::CopyIn(CopyResponse::new(0, width, stream::empty())))
                    }
                    Err(e) => Self::refusal(&e),
                }
            }
            Statement::CopyRefused(why) => {
                self.check_token().await?;
                Ok(Response::Error(Box::new(info(ERROR, "0A000", *why))))
            }
        }
    }

    /// The description of `prepared` (for the extended protocol's Describe)
    /// and its result columns as fields in `format`.
    async fn described_fields(
        &self,
        prepared: &Prepared,
        given: &[Option<Type>],
        format: &Format,
    ) -> PgWireResult<(Arc<Description>, Vec<FieldInfo>)> {
        self.touch();
        let d = self.describe(prepared, given).await?;
        let mut fields = Vec::new();
        for (i, (name, ty)) in d.columns.iter().flatten().enumerate() {
            fields.push(FieldInfo::new(
                name.clone(),
                None,
                None,
                ty.clone(),
                format_of(format, i)?,
            ));
        }
        Ok((d, fields))
    }

    /// The parameter types and result columns of `prepared`, planned once
    /// through the gateway (recorded as a `describe` in the access log).
    async fn describe(&self, prepared: &Prepared, given: &[Option<Type>]) -> PgWireResult<Arc<Description>> {
        if let Some(d) = prepared.described.lock().expect("described").clone() {
            return Ok(d);
        }
        let session = self.session().ok_or_else(no_session)?;
        let description = match &prepared.statement {
            Statement::Sql => {
                let sql_text = prepared.sql.as_str();
                let served = self
                    .gateway()
                    .run(
                        &session.credentials,
                        Operation::Describe,
                        Vec::new(),
                        |caller| async move { sql::describe(&caller, sql_text).await },
                    )
                    .await;
                let Described { params, schema, .. } = match served.result {
                    Ok(d) => d,
                    Err(e) => return Err(PgWireError::UserError(Box::new(statement_error(&e)))),
                };
                let count = params.len().max(given.len());
                if count > MAX_PARAMETERS {
                    return Err(too_many_parameters());
                }
                let params = (0..count)
                    .map(|i| {
                        given
                            .get(i)
                            .cloned()
                            .flatten()
                            .or_else(|| params.get(i).cloned().flatten().map(|t| pg_type_of(&t)))
                            .unwrap_or(Type::TEXT)
                    })
                    .collect();
                Description {
                    params,
                    columns: schema.map(|s| {
                        let planned = s.fields().iter().map(|f| f.name().clone()).collect();
                        let names = postgres_names(sql_text, planned);
                        names
                            .into_iter()
                            .zip(s.fields())
                            .map(|(n, f)| (n, pg_type(f)))
                            .collect()
                    }),
                }
            }
            Statement::Show(name) => Description {
                params: Vec::new(),
                columns: Some(vec![(name.to_ascii_lowercase(), Type::TEXT)]),
            },
            Statement::Version => Description {
                params: Vec::new(),
                columns: Some(vec![("version".to_owned(), Type::TEXT)]),
            },
            Statement::Catalog => Description {
                params: Vec::new(),
                columns: Some(
                    crate::catalog::columns(&prepared.sql)
                        .into_iter()
                        .map(|c| (c, Type::TEXT))
                        .collect(),
                ),
            },
            _ => Description {
                params: Vec::new(),
                columns: None,
            },
        };
        let description = Arc::new(description);
        *prepared.described.lock().expect("described") = Some(description.clone());
        Ok(description)
    }
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.touch();
        let texts = match statements::split(query) {
            Ok(texts) => texts,
            Err(e) => return Ok(vec![Response::Error(Box::new(split_info(&e)))]),
        };
        let mut status = client.transaction_status();
        let mut out = Vec::with_capacity(texts.len());
        for text in texts {
            let statement = statements::classify(text);
            let response = self
                .run(client, status, text, &statement, &[], &Format::UnifiedText)
                .await?;
            status = match &response {
                Response::TransactionStart(_) => status.to_in_transaction_state(),
                Response::TransactionEnd(_) => status.to_idle_state(),
                Response::Error(_) => status.to_error_state(),
                _ => status,
            };
            // Nothing runs after a failure, nor after a COPY FROM STDIN,
            // whose data comes next.
            let stop = matches!(response, Response::Error(_) | Response::CopyIn(_));
            out.push(response);
            if stop {
                break;
            }
        }
        self.touch();
        Ok(out)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::new(Parser)
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Prepared>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (d, fields) = self
            .described_fields(&target.statement, &target.parameter_types, &Format::UnifiedText)
            .await?;
        Ok(DescribeStatementResponse::new(d.params.clone(), fields))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Prepared>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (_, fields) = self
            .described_fields(
                &portal.statement.statement,
                &portal.statement.parameter_types,
                &portal.result_column_format,
            )
            .await?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Prepared>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.touch();
        let prepared = &portal.statement.statement;
        if portal.parameters.len() > MAX_PARAMETERS {
            return Err(too_many_parameters());
        }
        let given = &portal.statement.parameter_types;
        let mut params = Vec::with_capacity(portal.parameters.len());
        if !portal.parameters.is_empty() {
            let types: Vec<Type> = if (0..portal.parameters.len()).all(|i| given.get(i).is_some_and(Option::is_some)) {
                given.iter().flatten().cloned().collect()
            } else {
                self.describe(prepared, given).await?.params.clone()
            };
            for (i, value) in portal.parameters.iter().enumerate() {
                let ty = types.get(i).cloned().unwrap_or(Type::TEXT);
                let binary = format_of(&portal.parameter_format, i)? == FieldFormat::Binary;
                let value = parameter(&ty, binary, value.as_deref())
                    .map_err(|e| wire(ERROR, e.code, format!("parameter ${}: {e}", i + 1)))?;
                params.push(value);
            }
        }
        let status = client.transaction_status();
        let response = self
            .run(
                client,
                status,
                &prepared.sql,
                &prepared.statement,
                &params,
                &portal.result_column_format,
            )
            .await?;
        self.touch();
        match response {
            Response::Error(e) => Err(PgWireError::UserError(e)),
            other => Ok(other),
        }
    }
}
