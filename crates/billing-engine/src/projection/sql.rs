//! Turning a batch of events into the statements that update the
//! projection tables. Planning is plain data (SQL text with `$N`
//! placeholders, which both backends accept, and its arguments), so it is
//! written once; [`bind_args!`] binds it on whichever backend runs it.

use billing_domain::readmodel::{row_ops, BalanceRow, KeyRow, LedgerRow, RowOp, UsageKey, UsageRow};
use billing_domain::{Credits, Provider};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::{BTreeMap, HashMap};

use super::{Applied, ProjectedEvent};
use crate::db::Backend;
use crate::error::StoreError;

/// Every table a projector writes; a rebuild empties them all.
pub(crate) const PROJECTION_TABLES: [&str; 7] = [
    "key_view",
    "billing_mode",
    "credit_balances",
    "credit_ledger",
    "usage_daily",
    "projection_offsets",
    "projector_cursors",
];

/// Rows one multi-row statement carries at most.
const ROWS_PER_STATEMENT_MAX: usize = 500;

#[derive(Clone, Debug)]
pub(crate) enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Bool(bool),
    Time(DateTime<Utc>),
    OptTime(Option<DateTime<Utc>>),
    Date(NaiveDate),
    /// Postgres only: one column of a multi-row statement, as an array.
    TextArray(Vec<Option<String>>),
    IntArray(Vec<i64>),
    TimeArray(Vec<DateTime<Utc>>),
    DateArray(Vec<NaiveDate>),
}

impl Arg {
    /// An empty array of the kind that holds `self`, and its Postgres type.
    fn column_of(&self) -> (Arg, &'static str) {
        match self {
            Arg::Int(_) => (Arg::IntArray(Vec::new()), "bigint[]"),
            Arg::Time(_) | Arg::OptTime(_) => (Arg::TimeArray(Vec::new()), "timestamptz[]"),
            Arg::Date(_) => (Arg::DateArray(Vec::new()), "date[]"),
            _ => (Arg::TextArray(Vec::new()), "text[]"),
        }
    }

    /// Appends the scalar `value` to this column.
    fn push(&mut self, value: Arg) -> Result<(), StoreError> {
        match (self, value) {
            (Arg::TextArray(column), Arg::Text(v)) => column.push(Some(v)),
            (Arg::TextArray(column), Arg::OptText(v)) => column.push(v),
            (Arg::IntArray(column), Arg::Int(v)) => column.push(v),
            (Arg::TimeArray(column), Arg::Time(v)) => column.push(v),
            (Arg::DateArray(column), Arg::Date(v)) => column.push(v),
            (column, value) => return Err(StoreError::Corrupt(format!("cannot put {value:?} in {column:?}"))),
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Statement {
    pub sql: String,
    pub args: Vec<Arg>,
}

impl Statement {
    fn new(sql: impl Into<String>) -> Statement {
        Statement { sql: sql.into(), args: Vec::new() }
    }

    fn arg(mut self, arg: Arg) -> Statement {
        self.args.push(arg);
        self
    }

    #[cfg(test)]
    fn args(mut self, args: impl IntoIterator<Item = Arg>) -> Statement {
        self.args.extend(args);
        self
    }

    /// Appends `(${n}, ${n+1}, ...)` for `args` and takes them.
    fn push_tuple(&mut self, args: Vec<Arg>) {
        self.sql.push('(');
        for (i, arg) in args.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.args.push(arg);
            self.sql.push('$');
            self.sql.push_str(&self.args.len().to_string());
        }
        self.sql.push(')');
    }
}

/// Binds an [`Arg`] on one backend.
pub(crate) trait Binder: sqlx::Database {
    fn bind_arg<'q>(
        query: sqlx::query::Query<'q, Self, <Self as sqlx::Database>::Arguments<'q>>,
        arg: &'q Arg,
    ) -> sqlx::query::Query<'q, Self, <Self as sqlx::Database>::Arguments<'q>>;
}

impl Binder for sqlx::Postgres {
    fn bind_arg<'q>(
        query: sqlx::query::Query<'q, Self, sqlx::postgres::PgArguments>,
        arg: &'q Arg,
    ) -> sqlx::query::Query<'q, Self, sqlx::postgres::PgArguments> {
        match arg {
            Arg::Text(v) => query.bind(v.as_str()),
            Arg::OptText(v) => query.bind(v.as_deref()),
            Arg::Int(v) => query.bind(*v),
            Arg::Bool(v) => query.bind(*v),
            Arg::Time(v) => query.bind(*v),
            Arg::OptTime(v) => query.bind(*v),
            Arg::Date(v) => query.bind(*v),
            Arg::TextArray(v) => query.bind(v.as_slice()),
            Arg::IntArray(v) => query.bind(v.as_slice()),
            Arg::TimeArray(v) => query.bind(v.as_slice()),
            Arg::DateArray(v) => query.bind(v.as_slice()),
        }
    }
}

impl Binder for sqlx::Sqlite {
    fn bind_arg<'q>(
        query: sqlx::query::Query<'q, Self, sqlx::sqlite::SqliteArguments<'q>>,
        arg: &'q Arg,
    ) -> sqlx::query::Query<'q, Self, sqlx::sqlite::SqliteArguments<'q>> {
        match arg {
            Arg::Text(v) => query.bind(v.as_str()),
            Arg::OptText(v) => query.bind(v.as_deref()),
            Arg::Int(v) => query.bind(*v),
            Arg::Bool(v) => query.bind(*v),
            Arg::Time(v) => query.bind(*v),
            Arg::OptTime(v) => query.bind(*v),
            Arg::Date(v) => query.bind(*v),
            // Arrays are planned for Postgres only; SQLite gets multi-row
            // VALUES. Bound as JSON text so a mistake fails loudly in SQL.
            Arg::TextArray(_) | Arg::IntArray(_) | Arg::TimeArray(_) | Arg::DateArray(_) => {
                query.bind(format!("{arg:?}"))
            }
        }
    }
}

/// The query of `statement`, its arguments bound, on the backend its
/// executor names.
pub(crate) fn query<DB: Binder>(
    statement: &Statement,
) -> sqlx::query::Query<'_, DB, <DB as sqlx::Database>::Arguments<'_>> {
    let mut query = sqlx::query(&statement.sql);
    for arg in &statement.args {
        query = DB::bind_arg(query, arg);
    }
    query
}

fn int(value: u64) -> Result<Arg, StoreError> {
    i64::try_from(value).map(Arg::Int).map_err(|_| StoreError::Corrupt(format!("{value} does not fit a bigint")))
}

/// The query that reads the offsets of the workspaces of `events`.
pub(crate) fn offsets_query(events: &[ProjectedEvent], backend: Backend) -> Statement {
    let mut workspaces: Vec<&str> = events.iter().map(|e| e.workspace_id.as_str()).collect();
    workspaces.sort_unstable();
    workspaces.dedup();
    match backend {
        Backend::Postgres => Statement::new(
            "SELECT workspace_id, last_sequence FROM projection_offsets WHERE workspace_id = ANY($1::text[])",
        )
        .arg(Arg::TextArray(workspaces.into_iter().map(|w| Some(w.to_owned())).collect())),
        Backend::Sqlite => {
            // Anonymous placeholders: see [`anonymous`].
            let marks = vec!["?"; workspaces.len()].join(", ");
            Statement {
                sql: format!(
                    "SELECT workspace_id, last_sequence FROM projection_offsets WHERE workspace_id IN ({marks})"
                ),
                args: workspaces.into_iter().map(|w| Arg::Text(w.to_owned())).collect(),
            }
        }
    }
}

/// Loads the offsets of the workspaces of `events` inside `tx`.
macro_rules! load_offsets_in {
    ($tx:expr, $events:expr, $backend:expr) => {{
        let mut offsets = std::collections::HashMap::<String, u64>::new();
        if !$events.is_empty() {
            let statement = $crate::projection::sql::offsets_query($events, $backend);
            for row in $crate::projection::sql::query(&statement).fetch_all(&mut *$tx).await? {
                let workspace: String = sqlx::Row::try_get(&row, 0)?;
                let sequence: i64 = sqlx::Row::try_get(&row, 1)?;
                offsets.insert(workspace, u64::try_from(sequence).unwrap_or(0));
            }
        }
        offsets
    }};
}
pub(crate) use load_offsets_in as load_offsets;

/// Runs every statement of a plan inside `tx`.
macro_rules! execute_in {
    ($tx:expr, $plan:expr) => {{
        for statement in $plan {
            $crate::projection::sql::query(statement).execute(&mut *$tx).await?;
        }
    }};
}
pub(crate) use execute_in as execute;

/// What a batch does to one workspace's rows, merged.
#[derive(Default)]
struct WorkspaceDelta {
    credits: Option<BalanceRow>,
    last_sequence: u64,
}

/// What to do with an event whose predecessor was never applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holes {
    /// Fail the batch: a projector must never skip history.
    Refuse,
    /// Leave that workspace for the projector (the writer projecting its
    /// own new events while the projector is still catching up).
    Leave,
}

/// Plans the statements that apply `events` given the current `offsets`.
pub(crate) fn plan(
    events: &[ProjectedEvent],
    offsets: &HashMap<String, u64>,
    backend: Backend,
    holes: Holes,
) -> Result<(Vec<Statement>, Applied), StoreError> {
    let mut applied = Applied::default();
    let mut ordered: Vec<Statement> = Vec::new();
    let mut deltas: BTreeMap<&str, WorkspaceDelta> = BTreeMap::new();
    let mut ledger: Vec<(&str, LedgerRow)> = Vec::new();
    let mut usage: BTreeMap<(&str, UsageKey), UsageRow> = BTreeMap::new();
    for e in events {
        let workspace = e.workspace_id.as_str();
        let delta = deltas.entry(workspace).or_default();
        let last = delta.last_sequence.max(offsets.get(workspace).copied().unwrap_or(0));
        if e.sequence <= last {
            applied.skipped += 1;
            continue;
        }
        if e.sequence != last + 1 && holes == Holes::Leave {
            applied.left += 1;
            continue;
        }
        if e.sequence != last + 1 {
            return Err(StoreError::Corrupt(format!(
                "workspace {workspace}: event {} arrived but {} was never applied",
                e.sequence,
                last + 1
            )));
        }
        delta.last_sequence = e.sequence;
        applied.applied += 1;
        for op in row_ops(e.sequence, &e.event) {
            match op {
                RowOp::Credits { granted, spent, balance_after } => {
                    let credits = delta.credits.get_or_insert_with(BalanceRow::default);
                    credits.granted = add(credits.granted, granted)?;
                    credits.spent = add(credits.spent, spent)?;
                    credits.balance = balance_after;
                }
                RowOp::Ledger(row) => ledger.push((workspace, row)),
                RowOp::Usage { key, row } => usage.entry((workspace, key)).or_default().add(&row),
                other => ordered.push(ordered_statement(workspace, other)?),
            }
        }
    }
    let mut statements = ordered;
    statements.extend(credit_statements(backend, &deltas)?);
    statements.extend(ledger_statements(backend, &ledger)?);
    statements.extend(usage_statements(backend, &usage)?);
    statements.extend(offset_statements(backend, &deltas)?);
    if backend == Backend::Sqlite {
        statements = statements.into_iter().map(anonymous).collect::<Result<_, _>>()?;
    }
    Ok((statements, applied))
}

/// `statement` with every `$N` replaced by an anonymous `?` and its
/// arguments in the order they now appear. For SQLite: it looks a named
/// (or numbered) parameter up in a linear list, both when it prepares a
/// statement and when sqlx asks each parameter's name to bind it, so a
/// multi-row statement with n `$N` parameters costs O(n^2); a flush of a
/// few thousand ledger rows spent most of its time there.
pub(crate) fn anonymous(statement: Statement) -> Result<Statement, StoreError> {
    let mut sql = String::with_capacity(statement.sql.len());
    let mut args = Vec::with_capacity(statement.args.len());
    let mut rest = statement.sql.as_str();
    while let Some(at) = rest.find('$') {
        sql.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            sql.push('$');
            rest = after;
            continue;
        }
        let n: usize = after[..digits].parse().map_err(|_| StoreError::Corrupt("a parameter number".into()))?;
        let arg = n
            .checked_sub(1)
            .and_then(|i| statement.args.get(i))
            .ok_or_else(|| StoreError::Corrupt(format!("${n} has no argument")))?;
        sql.push('?');
        args.push(arg.clone());
        rest = &after[digits..];
    }
    sql.push_str(rest);
    Ok(Statement { sql, args })
}

fn add(a: Credits, b: Credits) -> Result<Credits, StoreError> {
    a.checked_add(b).ok_or_else(|| StoreError::Corrupt("credit totals overflow".into()))
}

fn active_columns(provider: Provider) -> (&'static str, &'static str) {
    match provider {
        Provider::Openai => ("openai_key_id", "openai_masked"),
        Provider::Anthropic => ("anthropic_key_id", "anthropic_masked"),
    }
}

/// The statement of an operation whose order matters (keys, mode).
fn ordered_statement(workspace: &str, op: RowOp) -> Result<Statement, StoreError> {
    let ws = || Arg::Text(workspace.to_owned());
    Ok(match op {
        RowOp::WorkspaceOpened => Statement::new(
            "INSERT INTO billing_mode (workspace_id, byo_enabled) VALUES ($1, false) ON CONFLICT (workspace_id) DO NOTHING",
        )
        .arg(ws()),
        RowOp::KeyAdded(KeyRow { key_id, provider, masked, status, added_seq, added_at, added_by, ended_at, ended_by }) => {
            Statement::new(
                "INSERT INTO key_view (workspace_id, key_id, provider, masked, status, added_seq, added_at, added_by, \
                 ended_at, ended_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .arg(ws())
            .arg(Arg::Text(key_id.to_string()))
            .arg(Arg::Text(provider.as_str().to_owned()))
            .arg(Arg::Text(masked))
            .arg(Arg::Text(status.as_str().to_owned()))
            .arg(int(added_seq)?)
            .arg(Arg::Time(added_at))
            .arg(Arg::Text(added_by))
            .arg(Arg::OptTime(ended_at))
            .arg(Arg::OptText(ended_by))
        }
        RowOp::KeyEnded { key_id, status, at, by } => Statement::new(
            "UPDATE key_view SET status = $3, ended_at = $4, ended_by = $5 WHERE workspace_id = $1 AND key_id = $2",
        )
        .arg(ws())
        .arg(Arg::Text(key_id.to_string()))
        .arg(Arg::Text(status.as_str().to_owned()))
        .arg(Arg::Time(at))
        .arg(Arg::Text(by)),
        RowOp::ActiveKeySet { provider, key_id, masked } => {
            let (id_col, masked_col) = active_columns(provider);
            Statement::new(format!("UPDATE billing_mode SET {id_col} = $2, {masked_col} = $3 WHERE workspace_id = $1"))
                .arg(ws())
                .arg(Arg::Text(key_id.to_string()))
                .arg(Arg::Text(masked))
        }
        RowOp::ActiveKeyCleared { provider, key_id } => {
            let (id_col, masked_col) = active_columns(provider);
            Statement::new(format!(
                "UPDATE billing_mode SET {id_col} = NULL, {masked_col} = NULL WHERE workspace_id = $1 AND {id_col} = $2"
            ))
            .arg(ws())
            .arg(Arg::Text(key_id.to_string()))
        }
        RowOp::ByoSet { enabled, at, by } => Statement::new(
            "UPDATE billing_mode SET byo_enabled = $2, changed_at = $3, changed_by = $4 WHERE workspace_id = $1",
        )
        .arg(ws())
        .arg(Arg::Bool(enabled))
        .arg(Arg::Time(at))
        .arg(Arg::Text(by)),
        RowOp::Credits { .. } | RowOp::Ledger(_) | RowOp::Usage { .. } => {
            return Err(StoreError::Corrupt("merged operation planned as ordered".into()))
        }
    })
}

/// Multi-row statements into `table (columns)`, then `tail` (an ON
/// CONFLICT clause or nothing). Postgres gets one statement whose text never
/// changes (one array per column through UNNEST, so it is prepared once);
/// SQLite gets multi-row VALUES (an in-process parse, cheap).
fn multi_row<T>(
    backend: Backend,
    table: &str,
    columns: &str,
    tail: &str,
    rows: &[T],
    tuple: impl Fn(&T) -> Result<Vec<Arg>, StoreError>,
) -> Result<Vec<Statement>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    match backend {
        Backend::Postgres => {
            let mut arrays: Vec<(Arg, &'static str)> = Vec::new();
            for row in rows {
                for (i, value) in tuple(row)?.into_iter().enumerate() {
                    if arrays.len() <= i {
                        arrays.push(value.column_of());
                    }
                    arrays[i].0.push(value)?;
                }
            }
            let unnest: Vec<String> = arrays.iter().enumerate().map(|(i, (_, t))| format!("${}::{t}", i + 1)).collect();
            let mut statement = Statement::new(format!(
                "INSERT INTO {table} ({columns}) SELECT * FROM UNNEST({}){tail}",
                unnest.join(", ")
            ));
            statement.args = arrays.into_iter().map(|(column, _)| column).collect();
            Ok(vec![statement])
        }
        Backend::Sqlite => {
            let mut statements = Vec::new();
            for chunk in rows.chunks(ROWS_PER_STATEMENT_MAX) {
                let mut statement = Statement::new(format!("INSERT INTO {table} ({columns}) VALUES "));
                for (i, row) in chunk.iter().enumerate() {
                    if i > 0 {
                        statement.sql.push_str(", ");
                    }
                    statement.push_tuple(tuple(row)?);
                }
                statement.sql.push_str(tail);
                statements.push(statement);
            }
            Ok(statements)
        }
    }
}

fn credit_statements(backend: Backend, deltas: &BTreeMap<&str, WorkspaceDelta>) -> Result<Vec<Statement>, StoreError> {
    let rows: Vec<(&str, BalanceRow)> = deltas.iter().filter_map(|(w, d)| d.credits.map(|c| (*w, c))).collect();
    // Inserted values are this batch's deltas; a missing row starts at zero.
    multi_row(
        backend,
        "credit_balances",
        "workspace_id, balance, granted, spent",
        " ON CONFLICT (workspace_id) DO UPDATE SET balance = excluded.balance, \
         granted = credit_balances.granted + excluded.granted, spent = credit_balances.spent + excluded.spent",
        &rows,
        |(w, c)| {
            Ok(vec![Arg::Text((*w).to_owned()), int(c.balance.get())?, int(c.granted.get())?, int(c.spent.get())?])
        },
    )
}

fn ledger_statements(backend: Backend, rows: &[(&str, LedgerRow)]) -> Result<Vec<Statement>, StoreError> {
    multi_row(
        backend,
        "credit_ledger",
        "workspace_id, seq, at, kind, amount, balance_after, reply_id, grant_id, model",
        "",
        rows,
        |(w, r)| {
            Ok(vec![
                Arg::Text((*w).to_owned()),
                int(r.seq)?,
                Arg::Time(r.at),
                Arg::Text(r.kind.as_str().to_owned()),
                Arg::Int(r.amount),
                int(r.balance_after.get())?,
                Arg::OptText(r.reply_id.clone()),
                Arg::OptText(r.grant_id.clone()),
                Arg::OptText(r.model.clone()),
            ])
        },
    )
}

fn usage_statements(
    backend: Backend,
    usage: &BTreeMap<(&str, UsageKey), UsageRow>,
) -> Result<Vec<Statement>, StoreError> {
    let rows: Vec<(&(&str, UsageKey), &UsageRow)> = usage.iter().collect();
    multi_row(
        backend,
        "usage_daily",
        "workspace_id, day, route, model, replies, credits_charged, list_cost",
        " ON CONFLICT (workspace_id, day, route, model) DO UPDATE SET replies = usage_daily.replies + excluded.replies, \
         credits_charged = usage_daily.credits_charged + excluded.credits_charged, \
         list_cost = usage_daily.list_cost + excluded.list_cost",
        &rows,
        |((w, (day, route, model)), row)| {
            Ok(vec![
                Arg::Text((*w).to_owned()),
                Arg::Date(*day),
                Arg::Text(route.as_str().to_owned()),
                Arg::Text(model.clone()),
                int(row.replies)?,
                int(row.credits_charged)?,
                int(row.list_cost)?,
            ])
        },
    )
}

fn offset_statements(backend: Backend, deltas: &BTreeMap<&str, WorkspaceDelta>) -> Result<Vec<Statement>, StoreError> {
    let rows: Vec<(&str, u64)> =
        deltas.iter().filter(|(_, d)| d.last_sequence > 0).map(|(w, d)| (*w, d.last_sequence)).collect();
    multi_row(
        backend,
        "projection_offsets",
        "workspace_id, last_sequence",
        " ON CONFLICT (workspace_id) DO UPDATE SET last_sequence = excluded.last_sequence",
        &rows,
        |(w, s)| Ok(vec![Arg::Text((*w).to_owned()), int(*s)?]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(arg: &Arg) -> String {
        match arg {
            Arg::Text(v) => v.clone(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn anonymous_placeholders_follow_the_order_of_use() {
        let statement = Statement::new("UPDATE t SET a = $2, b = $10, c = $1 WHERE d = $2 AND e = '$x'")
            .args((1..=10).map(|i| Arg::Text(format!("v{i}"))));
        let rewritten = anonymous(statement).unwrap();
        assert_eq!(rewritten.sql, "UPDATE t SET a = ?, b = ?, c = ? WHERE d = ? AND e = '$x'");
        assert_eq!(rewritten.args.iter().map(text).collect::<Vec<_>>(), ["v2", "v10", "v1", "v2"]);
    }

    #[test]
    fn a_placeholder_without_its_argument_is_an_error() {
        let statement = Statement::new("SELECT $1, $3").args([Arg::Int(1), Arg::Int(2)]);
        assert!(matches!(anonymous(statement), Err(StoreError::Corrupt(_))));
    }
}
