//! `ichnaea apikey …` and `ichnaea export-config …`: administration from the
//! command line, printing tables for people and JSON for scripts.

use ichnaea_core::{ApiKey, ExportConfig, FieldError};
use ichnaea_store::{Store, StoreError};
use serde::Serialize;
use serde_json::Value;

use crate::cli::{ApikeyCommand, ExportCommand, Output};

/// A value refused before anything was written; the process exits with status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub FieldError);

/// A row that does not exist, or already exists.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn print_rows<T: Serialize>(rows: &[T], columns: &[&str], output: &Output) -> anyhow::Result<()> {
    if output.json {
        // Serialised from the rows themselves, so members keep the column order.
        println!("{}", serde_json::to_string_pretty(rows)?);
        return Ok(());
    }
    let values: Vec<Value> = rows
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    let cells: Vec<Vec<String>> = values
        .iter()
        .map(|v| columns.iter().map(|c| text(&v[*c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: Vec<String>| {
        let padded: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(columns.iter().map(|c| c.to_string()).collect());
    for row in cells {
        line(row);
    }
    Ok(())
}

fn print_row<T: Serialize>(row: &T, fields: &[&str], output: &Output) -> anyhow::Result<()> {
    if output.json {
        println!("{}", serde_json::to_string_pretty(row)?);
        return Ok(());
    }
    let value = serde_json::to_value(row)?;
    let width = fields.iter().map(|f| f.len()).max().unwrap_or(0);
    for field in fields {
        println!("{field:<width$}  {}", text(&value[*field]));
    }
    Ok(())
}

/// Every `api_key` column, in table order.
const KEY_FIELDS: &[&str] = &[
    "valid_key",
    "maxreq",
    "allow_locate",
    "allow_region",
    "allow_fallback",
    "fallback_name",
    "fallback_schema",
    "fallback_url",
    "fallback_ratelimit",
    "fallback_ratelimit_interval",
    "fallback_cache_expire",
    "store_sample_locate",
    "store_sample_submit",
];

/// Every `export_config` column, in table order.
const EXPORT_FIELDS: &[&str] = &[
    "name",
    "batch",
    "schema",
    "url",
    "skip_keys",
    "skip_sources",
];

const KEY_COLUMNS: &[&str] = &[
    "valid_key",
    "maxreq",
    "allow_locate",
    "allow_region",
    "allow_fallback",
    "store_sample_locate",
    "store_sample_submit",
    "fallback_name",
    "fallback_schema",
];

const EXPORT_COLUMNS: &[&str] = &[
    "name",
    "schema",
    "batch",
    "url",
    "skip_keys",
    "skip_sources",
];

/// A create refused because the row exists is invalid input (exit status 2,
/// naming `field`), like any other refused value; other errors stay as they are.
fn taken(e: StoreError, field: &'static str) -> anyhow::Error {
    match e {
        StoreError::Duplicate(what) => {
            InvalidInput(FieldError::new(field, format!("{what} already exists"))).into()
        }
        other => other.into(),
    }
}

fn check(result: Result<(), FieldError>) -> anyhow::Result<()> {
    result.map_err(|e| InvalidInput(e).into())
}

/// Runs one `apikey` subcommand.
pub async fn apikey(store: &Store, command: ApikeyCommand) -> anyhow::Result<()> {
    match command {
        ApikeyCommand::Create {
            key,
            fields,
            output,
        } => {
            let mut row = ApiKey::new(key);
            fields.patch().apply(&mut row);
            check(row.validate())?;
            store
                .insert_api_key(&row)
                .await
                .map_err(|e| taken(e, "valid_key"))?;
            print_row(&row, KEY_FIELDS, &output)
        }
        ApikeyCommand::List { output } => {
            print_rows(&store.api_keys().await?, KEY_COLUMNS, &output)
        }
        ApikeyCommand::Show { key, output } => {
            let row = store
                .api_key(&key)
                .await?
                .ok_or_else(|| NotFound(format!("api key {key:?} not found")))?;
            print_row(&row, KEY_FIELDS, &output)?;
            if !output.json {
                // Not a column: the `key` label of this key's metrics.
                let width = KEY_FIELDS.iter().map(|f| f.len()).max().unwrap_or(0);
                let label = ichnaea_core::apikey::metric_label(&row.valid_key);
                println!("{:<width$}  {label}", "metric_label");
            }
            Ok(())
        }
        ApikeyCommand::Update {
            key,
            fields,
            output,
        } => {
            let mut row = store
                .api_key(&key)
                .await?
                .ok_or_else(|| NotFound(format!("api key {key:?} not found")))?;
            fields.patch().apply(&mut row);
            check(row.validate())?;
            if !store.update_api_key(&row).await? {
                return Err(NotFound(format!("api key {key:?} not found")).into());
            }
            print_row(&row, KEY_FIELDS, &output)
        }
        ApikeyCommand::Delete { key } => {
            if !store.delete_api_key(&key).await? {
                return Err(NotFound(format!("api key {key:?} not found")).into());
            }
            println!("deleted api key {key}");
            Ok(())
        }
    }
}

/// Runs one `export-config` subcommand.
pub async fn export_config(store: &Store, command: ExportCommand) -> anyhow::Result<()> {
    match command {
        ExportCommand::Create {
            name,
            schema,
            fields,
            output,
        } => {
            let mut row = ExportConfig::new(name, schema);
            fields.patch(None).apply(&mut row);
            check(row.validate())?;
            check(row.validate_among(&store.export_configs().await?))?;
            store
                .insert_export_config(&row)
                .await
                .map_err(|e| taken(e, "name"))?;
            print_row(&row, EXPORT_FIELDS, &output)
        }
        ExportCommand::List { output } => {
            print_rows(&store.export_configs().await?, EXPORT_COLUMNS, &output)
        }
        ExportCommand::Show { name, output } => {
            let row = store
                .export_config(&name)
                .await?
                .ok_or_else(|| NotFound(format!("export config {name:?} not found")))?;
            print_row(&row, EXPORT_FIELDS, &output)
        }
        ExportCommand::Update {
            name,
            schema,
            fields,
            output,
        } => {
            let mut row = store
                .export_config(&name)
                .await?
                .ok_or_else(|| NotFound(format!("export config {name:?} not found")))?;
            fields.patch(schema).apply(&mut row);
            check(row.validate())?;
            check(row.validate_among(&store.export_configs().await?))?;
            if !store.update_export_config(&row).await? {
                return Err(NotFound(format!("export config {name:?} not found")).into());
            }
            print_row(&row, EXPORT_FIELDS, &output)
        }
        ExportCommand::Delete { name } => {
            if !store.delete_export_config(&name).await? {
                return Err(NotFound(format!("export config {name:?} not found")).into());
            }
            println!("deleted export config {name}");
            Ok(())
        }
    }
}
