//! The PostgreSQL sink: results upserted by result id, keeping only the
//! highest-ranked revision (see [`record::outranks`]), so replays after a
//! crash and revised late results are idempotent. Rows are buffered and written in batches; a lost connection
//! is re-established with backoff.
//!
//! The table (created with `createTable: true`):
//!
//! ```sql
//! CREATE TABLE <table> (
//!   id           text PRIMARY KEY,    -- deterministic result id
//!   job          text NOT NULL,
//!   partition    integer NOT NULL,
//!   key          text NOT NULL,
//!   window_start timestamptz NOT NULL,
//!   window_end   timestamptz NOT NULL,
//!   aggregates   jsonb NOT NULL,      -- {"name": value, ...} in spec order
//!   revision     integer NOT NULL,    -- of the highest-ranked written so far
//!   final        boolean NOT NULL,    -- no later revision will come
//!   updated_at   timestamptz NOT NULL DEFAULT now()
//! )
//! ```

use std::time::Duration;

use anyhow::Context;
use tokio_postgres::{types::ToSql, Client, NoTls};

use super::{Flushing, Item, Sink};
use crate::{engine::WindowResult, output::record};

/// Rows per INSERT statement (9 parameters each, far below the limit).
const ROWS_PER_STATEMENT: usize = 500;
/// Connection attempts before a flush gives up.
const CONNECT_ATTEMPTS: u32 = 8;

pub struct Row {
    id: String,
    job: String,
    partition: i32,
    key: String,
    start_ms: i64,
    end_ms: i64,
    aggregates: String,
    revision: i32,
    is_final: bool,
}

/// Rows buffered for a table and written in batches over one connection,
/// re-established with backoff when lost; shared by the result sink and
/// the late/invalid record tables.
/// Rows of one kind, written to a table in one statement.
pub trait Rows: Sized + Send + Sync {
    fn write<'a>(
        client: &'a Client,
        table: &'a str,
        rows: &'a [Self],
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send + 'a;
}

pub struct Batches<R> {
    url: String,
    table: String,
    /// `postgres table <table>`, for messages.
    name: String,
    /// Run once on every new connection (`createTable`).
    ddl: Option<String>,
    client: Option<Client>,
    pending: Vec<R>,
}

impl<R: Rows> Batches<R> {
    /// Connects on the first flush.
    pub(crate) fn new(url: String, table: &str, ddl: Option<String>) -> Self {
        Self {
            url,
            table: table.to_string(),
            name: format!("postgres table {table}"),
            ddl,
            client: None,
            pending: Vec::new(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn push(&mut self, row: R) {
        self.pending.push(row);
    }

    /// Rows waiting to be written.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Writes every buffered row, [`ROWS_PER_STATEMENT`] at a time, with
    /// [`Rows::write`]; reconnects (with backoff) when the connection is
    /// lost, and retries the batch.
    pub(crate) async fn flush(&mut self) -> anyhow::Result<()> {
        while !self.pending.is_empty() {
            let n = self.pending.len().min(ROWS_PER_STATEMENT);
            if self.client.as_ref().is_none_or(Client::is_closed) {
                self.client = Some(connect(&self.url, self.ddl.as_deref(), &self.name).await?);
            }
            let client = self.client.as_ref().expect("connected above");
            match R::write(client, &self.table, &self.pending[..n]).await {
                Ok(()) => {
                    self.pending.drain(..n);
                }
                Err(e) if client.is_closed() => {
                    tracing::warn!("{}: connection lost ({e}); reconnecting", self.name);
                    self.client = None;
                }
                Err(e) => return Err(e).with_context(|| format!("writing to {}", self.name)),
            }
        }
        Ok(())
    }
}

/// Makes a record into a table's row.
type MakeRow<R> = Box<dyn Fn(&Item<'_>) -> anyhow::Result<R> + Send>;

/// A table sink: each record made into a row, rows written in batches.
pub struct Table<R> {
    rows: Batches<R>,
    row: MakeRow<R>,
}

impl<R: Rows + 'static> Sink for Table<R> {
    fn name(&self) -> String {
        self.rows.name().to_string()
    }

    fn write(&mut self, item: &Item<'_>) -> anyhow::Result<()> {
        let row = (self.row)(item).map_err(|e| anyhow::anyhow!("{}: {e}", self.rows.name()))?;
        self.rows.push(row);
        Ok(())
    }

    fn backlog(&self) -> usize {
        self.rows.pending()
    }

    fn remote(&self) -> bool {
        true
    }

    /// Writes every buffered row (see [`Batches::flush`]).
    fn flush(&mut self) -> Flushing<'_> {
        Box::pin(self.rows.flush())
    }
}

/// The results table.
pub type PostgresSink = Table<Row>;

impl Table<Row> {
    /// The sink a spec names for `job`'s results; connects on the first
    /// flush.
    pub fn open(spec: &eddy_api::spec::PostgresSink, job: &record::JobId) -> anyhow::Result<Self> {
        Ok(Self::new(
            url_of(spec)?,
            spec.table.clone(),
            spec.create_table,
            &job.name,
        ))
    }

    /// A sink for `job`'s results in `table`; connects on the first flush.
    pub fn new(url: String, table: String, create_table: bool, job: &str) -> Self {
        let ddl = create_table.then(|| create_table_sql(&table));
        let job = job.to_string();
        Self {
            rows: Batches::new(url, &table, ddl),
            row: Box::new(move |item| {
                let Some(result) = item.result else {
                    anyhow::bail!("a result came without its fields");
                };
                Ok(Row::of(&job, item.id, result, item.names))
            }),
        }
    }
}

impl Row {
    /// Result `r` under its [`record::result_id`] `id`, its aggregates
    /// named `names`.
    fn of(job: &str, id: &str, r: &WindowResult, names: &[std::sync::Arc<str>]) -> Self {
        let w = r.window;
        let aggregates: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .zip(&r.aggregates)
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect();
        Self {
            id: id.to_string(),
            job: job.to_string(),
            partition: r.partition as i32,
            key: r.key.to_string(),
            start_ms: w.start,
            end_ms: w.end,
            aggregates: serde_json::Value::Object(aggregates).to_string(),
            revision: r.revision as i32,
            is_final: r.is_final,
        }
    }
}

/// A table of late or invalid records (see `output::records`).
pub type RecordTable = Table<RecordRow>;

impl Table<RecordRow> {
    /// The table a spec names, for records of `kind` (`late` or `invalid`);
    /// a record already there (a replay) is left as it is.
    pub fn open(spec: &eddy_api::spec::PostgresSink, kind: &'static str) -> anyhow::Result<Self> {
        let ddl = spec.create_table.then(|| {
            format!(
                "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, kind text NOT NULL, \
                 record jsonb NOT NULL, written_at timestamptz NOT NULL DEFAULT now())",
                spec.table
            )
        });
        Ok(Self {
            rows: Batches::new(url_of(spec)?, &spec.table, ddl),
            row: Box::new(move |item| {
                Ok(RecordRow {
                    id: item.id.to_string(),
                    kind,
                    record: String::from_utf8_lossy(item.line).into_owned(),
                })
            }),
        })
    }
}

/// A late or invalid record, as a row.
pub struct RecordRow {
    id: String,
    kind: &'static str,
    record: String,
}

impl Rows for RecordRow {
    async fn write(client: &Client, table: &str, rows: &[Self]) -> anyhow::Result<()> {
        let mut values = Vec::with_capacity(rows.len());
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(rows.len() * 3);
        for (i, row) in rows.iter().enumerate() {
            values.push(format!(
                "(${}, ${}, ${}::text::jsonb)",
                i * 3 + 1,
                i * 3 + 2,
                i * 3 + 3
            ));
            params.extend([&row.id as &(dyn ToSql + Sync), &row.kind, &row.record]);
        }
        let sql = format!(
            "INSERT INTO {table} (id, kind, record) VALUES {} ON CONFLICT (id) DO NOTHING",
            values.join(", ")
        );
        client.execute(sql.as_str(), &params).await?;
        Ok(())
    }
}

/// The connection string of a PostgreSQL sink: its `url`, or the value of
/// its `urlSecret`, which reaches the processor as `EDDY_POSTGRES_URL`.
pub fn url_of(spec: &eddy_api::spec::PostgresSink) -> anyhow::Result<String> {
    match &spec.url {
        Some(url) => Ok(url.clone()),
        None => std::env::var("EDDY_POSTGRES_URL").map_err(|_| {
            anyhow::anyhow!(
                "the postgres sink's urlSecret reaches the processor as EDDY_POSTGRES_URL, which is not set"
            )
        }),
    }
}

/// Connects with backoff, running `ddl` (table creation) once connected.
async fn connect(url: &str, ddl: Option<&str>, name: &str) -> anyhow::Result<Client> {
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match tokio_postgres::connect(url, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!("postgres connection ended: {e}");
                    }
                });
                if let Some(ddl) = ddl {
                    client
                        .batch_execute(&one_at_a_time(ddl))
                        .await
                        .with_context(|| format!("creating {name}"))?;
                }
                return Ok(client);
            }
            Err(e) if attempt >= CONNECT_ATTEMPTS => {
                return Err(e).with_context(|| format!("connecting to {name}"))
            }
            Err(e) => {
                tracing::warn!("{name}: cannot connect ({e}); retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}

/// `ddl` in a transaction that first takes an advisory lock: `CREATE
/// TABLE IF NOT EXISTS` run at once by two sessions fails in one of them
/// (a unique violation in `pg_type`), as when the pods of a job start
/// together or a move's new owner opens the table beside its old one.
fn one_at_a_time(ddl: &str) -> String {
    format!("BEGIN; SELECT pg_advisory_xact_lock(hashtext('eddy: create table')); {ddl}; COMMIT")
}

/// The table's DDL (the table name was validated as an identifier).
pub fn create_table_sql(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            id text PRIMARY KEY,
            job text NOT NULL,
            partition integer NOT NULL,
            key text NOT NULL,
            window_start timestamptz NOT NULL,
            window_end timestamptz NOT NULL,
            aggregates jsonb NOT NULL,
            revision integer NOT NULL,
            final boolean NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )"
    )
}

/// One multi-row upsert: a row replaces the stored one only when it
/// outranks it ([`record::outranks`]: final, then higher revision), so older
/// revisions and replays never win, and a final result never loses to a
/// replay that revised the window more often before closing it.
impl Rows for Row {
    async fn write(client: &Client, table: &str, rows: &[Self]) -> anyhow::Result<()> {
        write_batch(client, table, rows).await
    }
}

async fn write_batch(client: &Client, table: &str, rows: &[Row]) -> anyhow::Result<()> {
    // Within one statement a row may only be touched once: keep the
    // highest-ranked revision of each id.
    let mut best: std::collections::BTreeMap<&str, &Row> = std::collections::BTreeMap::new();
    for row in rows {
        let slot = best.entry(row.id.as_str()).or_insert(row);
        if record::outranks(
            (row.is_final, row.revision as u32),
            (slot.is_final, slot.revision as u32),
        ) {
            *slot = row;
        }
    }
    let mut values = Vec::with_capacity(best.len());
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(best.len() * 9);
    for (i, row) in best.values().enumerate() {
        let b = i * 9;
        values.push(format!(
            "(${}, ${}, ${}, ${}, to_timestamp(${}::bigint / 1000.0), to_timestamp(${}::bigint / 1000.0), ${}::text::jsonb, ${}, ${})",
            b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9
        ));
        params.extend([
            &row.id as &(dyn ToSql + Sync),
            &row.job,
            &row.partition,
            &row.key,
            &row.start_ms,
            &row.end_ms,
            &row.aggregates,
            &row.revision,
            &row.is_final,
        ]);
    }
    let sql = format!(
        "INSERT INTO {table} AS t (id, job, partition, key, window_start, window_end, aggregates, revision, final)
         VALUES {}
         ON CONFLICT (id) DO UPDATE SET
           aggregates = EXCLUDED.aggregates, revision = EXCLUDED.revision,
           final = EXCLUDED.final, updated_at = now()
         WHERE (t.final, t.revision) < (EXCLUDED.final, EXCLUDED.revision)",
        values.join(", ")
    );
    client.execute(sql.as_str(), &params).await?;
    Ok(())
}
