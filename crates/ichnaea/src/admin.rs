//! `ichnaea apikey …` and `ichnaea export-config …`: administration from the
//! command line, printing tables for people and JSON for scripts.

use ichnaea_core::{ApiKey, ExportConfig, FieldError};
use ichnaea_store::Store;
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
    let values: Vec<Value> = rows
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    if output.json {
        println!("{}", serde_json::to_string_pretty(&values)?);
        return Ok(());
    }
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

fn print_row<T: Serialize>(row: &T, output: &Output) -> anyhow::Result<()> {
    let value = serde_json::to_value(row)?;
    if output.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    if let Value::Object(map) = value {
        let width = map.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in map {
            println!("{k:<width$}  {}", text(&v));
        }
    }
    Ok(())
}

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
            store.insert_api_key(&row).await?;
            print_row(&row, &output)
        }
        ApikeyCommand::List { output } => {
            print_rows(&store.api_keys().await?, KEY_COLUMNS, &output)
        }
        ApikeyCommand::Show { key, output } => {
            let row = store
                .api_key(&key)
                .await?
                .ok_or_else(|| NotFound(format!("api key {key:?} not found")))?;
            print_row(&row, &output)
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
            print_row(&row, &output)
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
            store.insert_export_config(&row).await?;
            print_row(&row, &output)
        }
        ExportCommand::List { output } => {
            print_rows(&store.export_configs().await?, EXPORT_COLUMNS, &output)
        }
        ExportCommand::Show { name, output } => {
            let row = store
                .export_config(&name)
                .await?
                .ok_or_else(|| NotFound(format!("export config {name:?} not found")))?;
            print_row(&row, &output)
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
            if !store.update_export_config(&row).await? {
                return Err(NotFound(format!("export config {name:?} not found")).into());
            }
            print_row(&row, &output)
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
