//! `ichnaea apikey …`, `ichnaea export-config …` and `ichnaea queues …`:
//! administration from the command line, printing tables for people and JSON
//! for scripts.

use ichnaea_core::{ApiKey, ExportConfig, FieldError};
use ichnaea_store::{Store, StoreError};
use serde::Serialize;
use serde_json::Value;

use crate::cli::{ApikeyCommand, ExportCommand, Output, QueuesCommand};
use ichnaea_core::queues::{EXPORT_PREFIX, export_target_of};
use ichnaea_queue::Queue;

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
pub async fn export_config(
    store: &Store,
    queue: &Queue,
    command: ExportCommand,
) -> anyhow::Result<()> {
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
        ExportCommand::Delete { name, purge } => {
            if store.export_config(&name).await?.is_none() {
                return Err(NotFound(format!("export config {name:?} not found")).into());
            }
            let queued = target_queues(queue, &name).await?;
            let items: u64 = queued.iter().map(|(_, n)| n).sum();
            if items > 0 && !purge {
                return Err(InvalidInput(FieldError::new(
                    "purge",
                    format!(
                        "export target {name} has {items} queued items that would never be exported; \
                         delete it with --purge to drop them, or wait until they are exported"
                    ),
                ))
                .into());
            }
            if !store.delete_export_config(&name).await? {
                return Err(NotFound(format!("export config {name:?} not found")).into());
            }
            println!("deleted export config {name}");
            if purge {
                // Again after the delete: items pushed meanwhile go too.
                let mut purged = 0;
                for (queue_name, _) in target_queues(queue, &name).await? {
                    purged += queue.purge(&queue_name).await?;
                }
                println!("purged {purged} queued items");
            }
            Ok(())
        }
    }
}

/// The queues of export target `name` that hold items, with their lengths.
async fn target_queues(queue: &Queue, name: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for queue_name in queue.queue_names(EXPORT_PREFIX).await? {
        if export_target_of(&queue_name) == Some(name) {
            let len = queue.len(&queue_name).await?;
            out.push((queue_name, len));
        }
    }
    Ok(out)
}

/// One line of `ichnaea queues list`.
#[derive(Serialize)]
struct QueueRow {
    queue: String,
    items: u64,
    oldest_seconds: Option<u64>,
    orphaned: bool,
}

/// Runs `ichnaea queues …`.
pub async fn queues(store: &Store, queue: &Queue, command: QueuesCommand) -> anyhow::Result<()> {
    let targets: Vec<String> = store
        .export_configs()
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();
    let orphaned =
        |name: &str| export_target_of(name).is_some_and(|t| !targets.iter().any(|n| n == t));
    match command {
        QueuesCommand::List { output } => {
            let mut rows = Vec::new();
            for name in queue.queue_names("").await? {
                rows.push(QueueRow {
                    items: queue.len(&name).await?,
                    oldest_seconds: queue.oldest_age(&name).await?.map(|a| a.as_secs()),
                    orphaned: orphaned(&name),
                    queue: name,
                });
            }
            print_rows(
                &rows,
                &["queue", "items", "oldest_seconds", "orphaned"],
                &output,
            )
        }
        QueuesCommand::PurgeOrphaned => {
            let (mut queues, mut items) = (0, 0);
            for name in queue.queue_names(EXPORT_PREFIX).await? {
                if orphaned(&name) {
                    items += queue.purge(&name).await?;
                    queues += 1;
                }
            }
            println!("purged {items} items from {queues} orphaned queues");
            Ok(())
        }
    }
}
