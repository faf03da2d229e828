//! `coffer codegen`: types for apps, generated from the schemas the server
//! knows, so an app's code names the tables and columns the server serves.
//!
//! `--lang ts` writes one TypeScript module, `--lang rust` one Rust module
//! (serde, serde_json and chrono only). Both hold, for every table, the row
//! as the data API answers it, what an insert may send and what a patch may
//! send; the docs are in `docs/guides/codegen.md`.
//!
//! Naming rule: a table's types are named after `schema.table` in
//! PascalCase, each part split at `_`: `contacts.people` is
//! `ContactsPeople`, its insert `ContactsPeopleInsert`, its patch
//! `ContactsPeoplePatch`. Fields keep the column names as they are.
//!
//! The output depends only on the schemas: schemas sorted by name (the
//! latest version of each), their tables sorted by name, columns in the
//! order the API shows them (system columns, then the schema's).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use coffer_core::schema::registry::SchemaRegistry;
use coffer_core::schema::{ColumnDef, ColumnType, SchemaDef, TableDef};

/// The language `coffer codegen` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// One TypeScript (ES) module.
    Ts,
    /// One Rust module (needs serde, serde_json and chrono with `serde`).
    Rust,
}

/// Options of `coffer codegen`.
#[derive(Args)]
#[command(after_help = "\
Examples:

  coffer codegen --lang ts --out src/coffer-schemas.ts
  coffer codegen --lang rust --schema contacts --schema tasks --out src/schemas.rs
  coffer codegen --lang ts --server https://vault.example.org --schema acme_recipes")]
pub struct CodegenArgs {
    /// The language to write.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Only this schema (by name, e.g. `contacts`); repeat for several
    /// [default: every built-in schema, or with --server every schema the
    /// server offers].
    #[arg(long = "schema", value_name = "NAME")]
    pub schemas: Vec<String>,
    /// Read the schemas from a running server (its base URL) instead of
    /// the built-in files: the built-in, operator and published schemas it
    /// lists at `GET /v1/schemas`.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs `coffer codegen`.
pub async fn run(args: CodegenArgs) -> anyhow::Result<()> {
    let registry = match &args.server {
        Some(url) => fetch_registry(url, &args.schemas).await?,
        None => SchemaRegistry::builtin().context("loading the built-in schemas")?,
    };
    let schemas = select(&registry, &args.schemas)?;
    let code = generate(args.lang, &schemas)?;
    match args.out {
        Some(path) => std::fs::write(&path, code).with_context(|| format!("writing {}", path.display()))?,
        None => {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            out.write_all(code.as_bytes())
                .and_then(|()| out.flush())
                .context("writing to standard output")?;
        }
    }
    Ok(())
}

/// The registry a server lists at `GET /v1/schemas`: the newest version of
/// each schema named in `names` (of every schema when `names` is empty),
/// each file fetched from the `href` the listing gives and checked as the
/// server checks it. Names the server does not have are left for
/// [`select`] to report.
async fn fetch_registry(base_url: &str, names: &[String]) -> anyhow::Result<SchemaRegistry> {
    let base = base_url.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let get = |url: String| {
        let client = client.clone();
        async move {
            let response = client
                .get(&url)
                .send()
                .await
                .with_context(|| format!("fetching {url}"))?;
            let status = response.status();
            let text = response.text().await.with_context(|| format!("reading {url}"))?;
            anyhow::ensure!(status.is_success(), "{url} answered {status}: {text}");
            serde_json::from_str::<serde_json::Value>(&text).with_context(|| format!("{url} did not answer JSON"))
        }
    };
    let listing = get(format!("{base}/v1/schemas")).await?;
    let mut newest: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for entry in listing["schemas"].as_array().into_iter().flatten() {
        let (Some(name), Some(version), Some(href)) = (
            entry["name"].as_str(),
            entry["version"].as_u64(),
            entry["href"].as_str(),
        ) else {
            anyhow::bail!("{base}/v1/schemas lists a schema without name, version or href: {entry}");
        };
        if !names.is_empty() && !names.iter().any(|n| n == name) {
            continue;
        }
        if newest.get(name).is_none_or(|(v, _)| *v < version) {
            newest.insert(name.to_owned(), (version, href.to_owned()));
        }
    }
    let mut registry = SchemaRegistry::new();
    for (name, (version, href)) in newest {
        let file = get(format!("{base}{href}")).await?;
        let source = format!("{base}{href}");
        let def = SchemaRegistry::parse(&file.to_string(), &source)
            .with_context(|| format!("schema {name} version {version} from the server"))?;
        registry.insert(def, &source)?;
    }
    Ok(registry)
}

/// Why the code could not be generated.
#[derive(Debug, PartialEq, Eq)]
pub enum CodegenError {
    /// `--schema` named a schema the registry does not have.
    UnknownSchema {
        /// The name given.
        name: String,
        /// The names the registry has, sorted.
        known: Vec<String>,
    },
    /// Two tables would get the same type name (or one a name the module
    /// defines itself).
    NameClash {
        /// The type name.
        type_name: String,
        /// The tables (or the module's own name) that would share it.
        owners: Vec<String>,
    },
}

impl fmt::Display for CodegenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodegenError::UnknownSchema { name, known } => {
                write!(f, "unknown schema `{name}`; the known schemas are {}", known.join(", "))
            }
            CodegenError::NameClash { type_name, owners } => write!(
                f,
                "{} would all be named `{type_name}`; generate them separately with --schema",
                owners.join(" and ")
            ),
        }
    }
}

impl std::error::Error for CodegenError {}

/// The latest version of every schema of `registry` named in `names` (every
/// schema when `names` is empty), sorted by name, each once.
pub fn select(registry: &SchemaRegistry, names: &[String]) -> Result<Vec<Arc<SchemaDef>>, CodegenError> {
    let mut known: Vec<String> = registry.iter().map(|s| s.name.clone()).collect();
    known.sort();
    known.dedup();
    let mut wanted: Vec<&String> = if names.is_empty() {
        known.iter().collect()
    } else {
        names.iter().collect()
    };
    wanted.sort();
    wanted.dedup();
    wanted
        .into_iter()
        .map(|name| {
            registry.latest(name).ok_or_else(|| CodegenError::UnknownSchema {
                name: name.clone(),
                known: known.clone(),
            })
        })
        .collect()
}

/// The module for `schemas` in `lang`.
pub fn generate(lang: Lang, schemas: &[Arc<SchemaDef>]) -> Result<String, CodegenError> {
    let tables = tables(schemas)?;
    Ok(match lang {
        Lang::Ts => typescript(schemas, &tables),
        Lang::Rust => rust(schemas, &tables),
    })
}

/// One table to generate types for.
struct Table<'a> {
    /// `schema.table`.
    qualified: String,
    /// The row type's name, e.g. `ContactsPeople`.
    type_name: String,
    def: &'a TableDef,
}

/// Names the TypeScript module defines besides the tables' types; a table
/// whose row, insert or patch type would have one of them is refused.
const TS_OWN_NAMES: [&str; 8] = [
    "JsonValue",
    "Timestamp",
    "CalendarDate",
    "Base64",
    "Uuid",
    "Tables",
    "TableName",
    "Columns",
];

/// The tables of `schemas`, sorted by schema then table name, with their
/// type names; refuses two tables (or a table and a name of the module)
/// sharing a type name.
fn tables(schemas: &[Arc<SchemaDef>]) -> Result<Vec<Table<'_>>, CodegenError> {
    let mut tables: Vec<Table<'_>> = schemas
        .iter()
        .flat_map(|schema| {
            schema.tables.iter().map(|def| Table {
                qualified: format!("{}.{}", schema.name, def.name),
                type_name: format!("{}{}", pascal_case(&schema.name), pascal_case(&def.name)),
                def,
            })
        })
        .collect();
    tables.sort_by(|a, b| a.qualified.cmp(&b.qualified));
    let mut owners: BTreeMap<String, Vec<String>> = TS_OWN_NAMES
        .iter()
        .map(|n| ((*n).to_owned(), vec![format!("the module's own `{n}`")]))
        .collect();
    for table in &tables {
        for suffix in ["", "Insert", "Patch"] {
            owners
                .entry(format!("{}{suffix}", table.type_name))
                .or_default()
                .push(table.qualified.clone());
        }
    }
    if let Some((type_name, owners)) = owners.into_iter().find(|(_, owners)| owners.len() > 1) {
        return Err(CodegenError::NameClash { type_name, owners });
    }
    Ok(tables)
}

/// `contacts` → `Contacts`, `health_records` → `HealthRecords`,
/// `v2_notes` → `V2Notes`.
pub fn pascal_case(identifier: &str) -> String {
    identifier
        .split('_')
        .flat_map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase()).into_iter().chain(chars)
        })
        .collect()
}

/// The system columns every row shows, their types in JSON and their
/// descriptions.
struct SystemColumn {
    name: &'static str,
    ty: ColumnType,
    description: &'static str,
}

/// The system columns in the order the API shows them
/// ([`coffer_core::schema::VISIBLE_SYSTEM_COLUMNS`]).
const SYSTEM: [SystemColumn; 6] = [
    SystemColumn {
        name: "id",
        ty: ColumnType::Text,
        description: "The row's id: chosen by the app that created it, or a lower case ULID.",
    },
    SystemColumn {
        name: "_seq",
        ty: ColumnType::Integer,
        description: "The vault's change sequence number of this version of the row (for `if_seq`).",
    },
    SystemColumn {
        name: "_created_by",
        ty: ColumnType::Text,
        description: "The app that created the row (its client id).",
    },
    SystemColumn {
        name: "_updated_by",
        ty: ColumnType::Text,
        description: "The app that last changed the row (its client id).",
    },
    SystemColumn {
        name: "_created_at",
        ty: ColumnType::Timestamp,
        description: "When the row was created.",
    },
    SystemColumn {
        name: "_updated_at",
        ty: ColumnType::Timestamp,
        description: "When the row was last changed.",
    },
];

/// The description of `column` with what else the schema says of it
/// (what it references, its sensitivity label).
fn column_doc(column: &ColumnDef) -> String {
    let mut doc = column.description.clone();
    if let Some(table) = &column.references {
        let _ = write!(doc, "\n\nThe `id` of a row of `{table}`.");
    }
    if let Some(label) = &column.sensitive {
        let _ = write!(doc, "\n\nSensitive: {label}.");
    }
    doc
}

/// The schemas and versions, as the header comments show them.
fn versions(schemas: &[Arc<SchemaDef>]) -> String {
    schemas
        .iter()
        .map(|s| format!("{} v{}", s.name, s.version))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------- TypeScript

/// The TypeScript type of a value of type `ty` in the API's JSON.
fn ts_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Text => "string",
        ColumnType::Integer | ColumnType::Float => "number",
        ColumnType::Boolean => "boolean",
        ColumnType::Timestamp => "Timestamp",
        ColumnType::Date => "CalendarDate",
        ColumnType::Json => "JsonValue",
        ColumnType::Bytes => "Base64",
        ColumnType::Uuid => "Uuid",
        ColumnType::Vector(_) => "number[]",
    }
}

/// `text` as a `/** … */` comment indented by `indent`.
fn ts_doc(out: &mut String, indent: &str, text: &str) {
    let text = text.replace("*/", "*\\/");
    let lines: Vec<&str> = text.lines().collect();
    if let [line] = lines.as_slice() {
        let _ = writeln!(out, "{indent}/** {line} */");
        return;
    }
    let _ = writeln!(out, "{indent}/**");
    for line in lines {
        if line.is_empty() {
            let _ = writeln!(out, "{indent} *");
        } else {
            let _ = writeln!(out, "{indent} * {line}");
        }
    }
    let _ = writeln!(out, "{indent} */");
}

/// `s` as a TypeScript (and JSON) string literal.
fn ts_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The TypeScript module.
fn typescript(schemas: &[Arc<SchemaDef>], tables: &[Table<'_>]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Generated by `coffer codegen --lang ts` from the Coffer schemas {}.\n\
         // Do not edit: generate it again when the schemas change.\n",
        versions(schemas)
    );
    out.push_str(
        "/** Any JSON value: what a `json` column holds. */\n\
         export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };\n\
         /** An instant as RFC 3339 text in UTC, e.g. `2025-01-31T08:30:00.000000Z`. */\n\
         export type Timestamp = string;\n\
         /** A calendar date, `YYYY-MM-DD`. */\n\
         export type CalendarDate = string;\n\
         /** Binary data as standard base64 text. */\n\
         export type Base64 = string;\n\
         /** A UUID in its canonical text form (lower case, hyphenated). */\n\
         export type Uuid = string;\n\n",
    );
    out.push_str(
        "/** The version of each schema these types were generated from. */\nexport const SCHEMA_VERSIONS = {\n",
    );
    for schema in schemas {
        let _ = writeln!(out, "  {}: {},", schema.name, schema.version);
    }
    out.push_str("} as const;\n");

    for table in tables {
        let name = &table.type_name;
        let qualified = &table.qualified;
        out.push('\n');
        let _ = writeln!(out, "// {qualified}\n");
        ts_doc(
            &mut out,
            "",
            &format!(
                "{}\n\nA row of `{qualified}` as the data API answers it.",
                table.def.description
            ),
        );
        let _ = writeln!(out, "export interface {name} {{");
        for system in &SYSTEM {
            ts_doc(&mut out, "  ", system.description);
            let _ = writeln!(out, "  {}: {};", system.name, ts_type(system.ty));
        }
        for column in &table.def.columns {
            ts_doc(&mut out, "  ", &column_doc(column));
            let null = if column.nullable { " | null" } else { "" };
            let _ = writeln!(out, "  {}: {}{null};", column.name, ts_type(column.ty));
        }
        out.push_str("}\n\n");

        ts_doc(
            &mut out,
            "",
            &format!(
                "A new row of `{qualified}`: the columns that may not be null are required; \
                 `id` is chosen by the vault when left out."
            ),
        );
        let _ = writeln!(out, "export interface {name}Insert {{");
        ts_doc(&mut out, "  ", SYSTEM[0].description);
        out.push_str("  id?: string;\n");
        for column in &table.def.columns {
            ts_doc(&mut out, "  ", &column_doc(column));
            let (optional, null) = if column.nullable { ("?", " | null") } else { ("", "") };
            let _ = writeln!(out, "  {}{optional}: {}{null};", column.name, ts_type(column.ty));
        }
        out.push_str("}\n\n");

        ts_doc(
            &mut out,
            "",
            &format!(
                "A change to a row of `{qualified}`: the columns to set; `null` clears a column \
                 that may be null."
            ),
        );
        let _ = writeln!(out, "export interface {name}Patch {{");
        for column in &table.def.columns {
            ts_doc(&mut out, "  ", &column_doc(column));
            let null = if column.nullable { " | null" } else { "" };
            let _ = writeln!(out, "  {}?: {}{null};", column.name, ts_type(column.ty));
        }
        out.push_str("}\n");
    }

    out.push_str("\n/** Each table's name (`schema.table`), by its type's name. */\nexport const TABLES = {\n");
    for table in tables {
        let _ = writeln!(out, "  {}: {},", table.type_name, ts_string(&table.qualified));
    }
    out.push_str("} as const;\n\n/** A table's name, `schema.table`. */\nexport type TableName = keyof Tables;\n\n");

    out.push_str(
        "/** Each table's columns in the order rows show them: the system columns, then the schema's. */\n\
         export const COLUMNS = {\n",
    );
    for table in tables {
        let names: Vec<String> = SYSTEM
            .iter()
            .map(|s| s.name)
            .chain(table.def.columns.iter().map(|c| c.name.as_str()))
            .map(ts_string)
            .collect();
        let _ = writeln!(out, "  {}: [{}],", ts_string(&table.qualified), names.join(", "));
    }
    out.push_str(
        "} as const;\n\n/** A column name of table `T` (one of `COLUMNS[T]`). */\n\
         export type Columns<T extends TableName> = keyof Tables[T][\"row\"] & string;\n\n",
    );

    out.push_str(
        "/** Every table by name, with the types of its rows, inserts and patches: a client can be generic over it. */\n\
         export interface Tables {\n",
    );
    for table in tables {
        let name = &table.type_name;
        let _ = writeln!(
            out,
            "  {}: {{ row: {name}; insert: {name}Insert; patch: {name}Patch }};",
            ts_string(&table.qualified)
        );
    }
    out.push_str("}\n");
    out
}

// ---------------------------------------------------------------- Rust

/// The Rust type of a value of type `ty` in the API's JSON.
fn rust_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Text | ColumnType::Bytes | ColumnType::Uuid => "String",
        ColumnType::Integer => "i64",
        ColumnType::Float => "f64",
        ColumnType::Boolean => "bool",
        ColumnType::Timestamp => "chrono::DateTime<chrono::Utc>",
        ColumnType::Date => "chrono::NaiveDate",
        ColumnType::Json => "serde_json::Value",
        ColumnType::Vector(_) => "Vec<f32>",
    }
}

/// Words a field may not be named, even as a raw identifier.
const RUST_NOT_RAW: [&str; 4] = ["crate", "self", "super", "_"];

/// Rust's keywords (strict and reserved, every edition).
const RUST_KEYWORDS: [&str; 50] = [
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate", "do", "dyn", "else",
    "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "macro", "match", "mod",
    "move", "mut", "override", "priv", "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true",
    "try", "type", "typeof", "unsafe", "unsized", "use", "virtual", "where", "while",
];

/// The field for a column named `name`, and the `serde(rename)` it needs
/// when the field is not spelled like the column.
fn rust_field(name: &str) -> (String, Option<&str>) {
    if RUST_NOT_RAW.contains(&name) {
        (format!("{name}_"), Some(name))
    } else if RUST_KEYWORDS.contains(&name) {
        (format!("r#{name}"), None)
    } else {
        (name.to_owned(), None)
    }
}

/// `text` as `///` lines indented by `indent`.
fn rust_doc(out: &mut String, indent: &str, text: &str) {
    for line in text.lines() {
        if line.is_empty() {
            let _ = writeln!(out, "{indent}///");
        } else {
            let _ = writeln!(out, "{indent}/// {line}");
        }
    }
}

/// `s` as a Rust string literal.
fn rust_string(s: &str) -> String {
    format!("{s:?}")
}

/// One field: its doc, its serde attributes, its declaration.
fn rust_field_decl(out: &mut String, name: &str, doc: &str, ty: &str, attrs: &[&str]) {
    rust_doc(out, "    ", doc);
    let (field, rename) = rust_field(name);
    let mut serde: Vec<String> = Vec::new();
    if let Some(original) = rename {
        serde.push(format!("rename = {}", rust_string(original)));
    }
    serde.extend(attrs.iter().map(|a| (*a).to_owned()));
    if !serde.is_empty() {
        let _ = writeln!(out, "    #[serde({})]", serde.join(", "));
    }
    let _ = writeln!(out, "    pub {field}: {ty},");
}

/// The derive every generated type has.
const RUST_DERIVE: &str = "#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]";

/// What an optional field of an insert or a patch carries.
const SKIP_NONE: &str = "default, skip_serializing_if = \"Option::is_none\"";

/// The Rust module.
fn rust(schemas: &[Arc<SchemaDef>], tables: &[Table<'_>]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Generated by `coffer codegen --lang rust` from the Coffer schemas {}.\n\
         // Do not edit: generate it again when the schemas change.\n\
         //\n\
         // Needs serde (with `derive`), serde_json, and chrono (with `serde`).\n",
        versions(schemas)
    );
    out.push_str("/// The version of each schema these types were generated from.\npub const SCHEMA_VERSIONS: &[(&str, u32)] = &[\n");
    for schema in schemas {
        let _ = writeln!(out, "    ({}, {}),", rust_string(&schema.name), schema.version);
    }
    out.push_str("];\n");

    for table in tables {
        let name = &table.type_name;
        let qualified = &table.qualified;
        let user = &table.def.columns;

        out.push('\n');
        rust_doc(
            &mut out,
            "",
            &format!(
                "{}\n\nA row of `{qualified}` as the data API answers it.",
                table.def.description
            ),
        );
        let _ = writeln!(out, "{RUST_DERIVE}\npub struct {name} {{");
        for system in &SYSTEM {
            rust_field_decl(&mut out, system.name, system.description, rust_type(system.ty), &[]);
        }
        for column in user {
            let ty = rust_type(column.ty);
            let ty = if column.nullable {
                format!("Option<{ty}>")
            } else {
                ty.to_owned()
            };
            rust_field_decl(&mut out, &column.name, &column_doc(column), &ty, &[]);
        }
        out.push_str("}\n\n");

        let _ = writeln!(out, "impl {name} {{");
        let _ = writeln!(
            out,
            "    /// The table's name.\n    pub const TABLE: &'static str = {};",
            rust_string(qualified)
        );
        let columns: Vec<String> = SYSTEM
            .iter()
            .map(|s| s.name)
            .chain(user.iter().map(|c| c.name.as_str()))
            .map(rust_string)
            .collect();
        out.push_str(
            "    /// The columns in the order rows show them: the system columns, then the schema's.\n    \
             pub const COLUMNS: &'static [&'static str] = &[\n",
        );
        for column in columns {
            let _ = writeln!(out, "        {column},");
        }
        out.push_str("    ];\n");
        out.push_str("}\n\n");

        rust_doc(
            &mut out,
            "",
            &format!("A new row of `{qualified}`. `id` is chosen by the vault when it is `None`."),
        );
        let _ = writeln!(out, "{RUST_DERIVE}\npub struct {name}Insert {{");
        rust_field_decl(&mut out, "id", SYSTEM[0].description, "Option<String>", &[SKIP_NONE]);
        for column in user {
            let ty = rust_type(column.ty);
            if column.nullable {
                rust_field_decl(
                    &mut out,
                    &column.name,
                    &column_doc(column),
                    &format!("Option<{ty}>"),
                    &[SKIP_NONE],
                );
            } else {
                rust_field_decl(&mut out, &column.name, &column_doc(column), ty, &[]);
            }
        }
        out.push_str("}\n\n");

        let required: Vec<&ColumnDef> = user.iter().filter(|c| !c.nullable).collect();
        let _ = writeln!(out, "impl {name}Insert {{");
        out.push_str("    /// A new row with the columns that may not be null; every other column is left out.\n");
        if required.len() > 7 {
            out.push_str("    #[allow(clippy::too_many_arguments)]\n");
        }
        let params: Vec<String> = required
            .iter()
            .map(|c| format!("{}: {}", rust_field(&c.name).0, rust_type(c.ty)))
            .collect();
        let _ = writeln!(out, "    pub fn new({}) -> Self {{", params.join(", "));
        out.push_str("        Self {\n            id: None,\n");
        for column in user {
            let field = rust_field(&column.name).0;
            if column.nullable {
                let _ = writeln!(out, "            {field}: None,");
            } else {
                let _ = writeln!(out, "            {field},");
            }
        }
        out.push_str("        }\n    }\n}\n\n");

        rust_doc(
            &mut out,
            "",
            &format!(
                "A change to a row of `{qualified}`: `None` leaves a column as it is; for a column \
                 that may be null, `Some(None)` clears it."
            ),
        );
        let _ = writeln!(
            out,
            "#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]\npub struct {name}Patch {{"
        );
        for column in user {
            let ty = rust_type(column.ty);
            let ty = if column.nullable {
                format!("Option<Option<{ty}>>")
            } else {
                format!("Option<{ty}>")
            };
            rust_field_decl(&mut out, &column.name, &column_doc(column), &ty, &[SKIP_NONE]);
        }
        out.push_str("}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_type() -> Vec<Arc<SchemaDef>> {
        vec![Arc::new(SchemaDef {
            name: "demo_app".into(),
            version: 3,
            description: "A demo.".into(),
            tables: vec![TableDef::with_every_type()],
        })]
    }

    #[test]
    fn names_are_pascal_case_of_schema_and_table() {
        assert_eq!(pascal_case("contacts"), "Contacts");
        assert_eq!(pascal_case("health_records"), "HealthRecords");
        assert_eq!(pascal_case("v2__x"), "V2X");
        let schemas = every_type();
        assert_eq!(tables(&schemas).unwrap()[0].type_name, "DemoAppT");
    }

    #[test]
    fn every_column_type_has_its_json_form() {
        let ts = generate(Lang::Ts, &every_type()).unwrap();
        for line in [
            "  name: string;",
            "  n: number | null;",
            "  f: number | null;",
            "  b: boolean | null;",
            "  ts: Timestamp | null;",
            "  day: CalendarDate | null;",
            "  j: JsonValue | null;",
            "  raw: Base64 | null;",
            "  u: Uuid | null;",
            "  v: number[] | null;",
            "  _seq: number;",
            "  id?: string;",
            "  name?: string;",
            "  none?: string | null;",
        ] {
            assert!(ts.lines().any(|l| l == line), "no `{line}` in\n{ts}");
        }
        assert!(ts.contains("demo_app: 3,"), "{ts}");
        let rust = generate(Lang::Rust, &every_type()).unwrap();
        for line in [
            "    pub name: String,",
            "    pub n: Option<i64>,",
            "    pub f: Option<f64>,",
            "    pub b: Option<bool>,",
            "    pub ts: Option<chrono::DateTime<chrono::Utc>>,",
            "    pub day: Option<chrono::NaiveDate>,",
            "    pub j: Option<serde_json::Value>,",
            "    pub raw: Option<String>,",
            "    pub u: Option<String>,",
            "    pub v: Option<Vec<f32>>,",
            "    pub _created_at: chrono::DateTime<chrono::Utc>,",
            "    pub none: Option<Option<String>>,",
            "    pub fn new(name: String) -> Self {",
        ] {
            assert!(rust.lines().any(|l| l == line), "no `{line}` in\n{rust}");
        }
    }

    #[test]
    fn keywords_become_raw_or_renamed_fields() {
        assert_eq!(rust_field("type"), ("r#type".to_owned(), None));
        assert_eq!(rust_field("self"), ("self_".to_owned(), Some("self")));
        assert_eq!(rust_field("title"), ("title".to_owned(), None));
    }

    #[test]
    fn unknown_schemas_and_clashing_names_are_refused() {
        let registry = SchemaRegistry::builtin().unwrap();
        let err = select(&registry, &["contacts".into(), "contact".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown schema `contact`; the known schemas are bookmarks, calendar, contacts, health, journal, notes, tasks"
        );
        let picked = select(&registry, &["tasks".into(), "contacts".into(), "tasks".into()]).unwrap();
        let names: Vec<&str> = picked.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["contacts", "tasks"]);

        let mut clash = every_type();
        let mut other = (*clash[0]).clone();
        other.name = "demo".into();
        other.tables[0].name = "app_t".into();
        clash.push(Arc::new(other));
        assert_eq!(
            generate(Lang::Ts, &clash).unwrap_err().to_string(),
            "demo.app_t and demo_app.t would all be named `DemoAppT`; generate them separately with --schema"
        );
    }

    #[test]
    fn output_is_the_same_every_time() {
        let registry = SchemaRegistry::builtin().unwrap();
        for lang in [Lang::Ts, Lang::Rust] {
            let a = generate(lang, &select(&registry, &[]).unwrap()).unwrap();
            let b = generate(lang, &select(&SchemaRegistry::builtin().unwrap(), &[]).unwrap()).unwrap();
            assert_eq!(a, b);
        }
    }
}
