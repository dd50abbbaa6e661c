//! Writing a statement as it is folded: a table for people, CSV for
//! spreadsheets, JSON for programs. Each writer streams: a line is written
//! when it is folded, so a million-event statement never sits in memory.

use std::io::{self, Write};

use super::statement::{StatementLine, StatementSummary};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

impl Format {
    pub fn parse(raw: &str) -> Option<Format> {
        match raw {
            "table" => Some(Format::Table),
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Writes one statement in one format.
pub struct Renderer<W: Write> {
    out: W,
    format: Format,
    lines: u64,
}

const TABLE_HEADER: [&str; 9] = ["SEQ", "AT (UTC)", "ACTOR", "EVENT", "ROUTE", "MODEL", "LIST", "CREDITS", "BALANCE"];
const CSV_HEADER: &str = "sequence,at,actor,event_type,route,model,list_cost,credits,balance_after,change";

impl<W: Write> Renderer<W> {
    pub fn new(out: W, format: Format) -> Renderer<W> {
        Renderer { out, format, lines: 0 }
    }

    pub fn begin(&mut self, workspace: &str) -> io::Result<()> {
        match self.format {
            Format::Table => {
                writeln!(self.out, "Statement of workspace {workspace}")?;
                writeln!(self.out)?;
                let h = TABLE_HEADER;
                writeln!(
                    self.out,
                    "{:>6}  {:<26}  {:<12}  {:<17}  {:<9}  {:<16}  {:>5}  {:>8}  {:>8}  CHANGE",
                    h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]
                )
            }
            Format::Csv => writeln!(self.out, "{CSV_HEADER}"),
            Format::Json => write!(self.out, "{{\"workspace_id\":{},\"lines\":[", json_string(workspace)),
        }
    }

    pub fn line(&mut self, line: &StatementLine) -> io::Result<()> {
        self.lines += 1;
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        match self.format {
            Format::Table => writeln!(
                self.out,
                "{:>6}  {:<26}  {:<12}  {:<17}  {:<9}  {:<16}  {:>5}  {:>8}  {:>8}  {}",
                line.sequence,
                line.at.format("%Y-%m-%d %H:%M:%S%.6f"),
                clip(&line.actor, 12),
                line.event_type,
                opt(&line.route),
                clip(&opt(&line.model), 16),
                line.list_cost.map_or("-".to_owned(), |c| c.to_string()),
                signed(line.credits),
                line.balance_after,
                line.change
            ),
            Format::Csv => writeln!(
                self.out,
                "{},{},{},{},{},{},{},{},{},{}",
                line.sequence,
                line.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                csv(&line.actor),
                line.event_type,
                line.route.as_deref().unwrap_or(""),
                csv(line.model.as_deref().unwrap_or("")),
                line.list_cost.map_or(String::new(), |c| c.to_string()),
                line.credits,
                line.balance_after,
                csv(&line.change)
            ),
            Format::Json => {
                if self.lines > 1 {
                    write!(self.out, ",")?;
                }
                serde_json::to_writer(&mut self.out, line).map_err(io::Error::other)
            }
        }
    }

    pub fn end(mut self, summary: &StatementSummary) -> io::Result<W> {
        match self.format {
            Format::Table => self.table_end(summary)?,
            Format::Csv => {}
            Format::Json => {
                write!(self.out, "],\"summary\":")?;
                serde_json::to_writer(&mut self.out, summary).map_err(io::Error::other)?;
                writeln!(self.out, "}}")?;
            }
        }
        self.out.flush()?;
        Ok(self.out)
    }

    fn table_end(&mut self, s: &StatementSummary) -> io::Result<()> {
        writeln!(self.out)?;
        writeln!(
            self.out,
            "{} events; opening balance {}, closing balance {}",
            self.lines, s.opening_balance, s.closing_balance
        )?;
        writeln!(self.out, "granted {}", s.totals.granted)?;
        writeln!(self.out, "{:<10}  {:>8}  {:>15}  {:>9}", "ROUTE", "REPLIES", "CREDITS CHARGED", "LIST COST")?;
        for (route, t) in &s.totals.routes {
            writeln!(self.out, "{:<10}  {:>8}  {:>15}  {:>9}", route, t.replies, t.credits_charged, t.list_cost)?;
        }
        let st = &s.state;
        writeln!(self.out)?;
        writeln!(
            self.out,
            "state at {} (after event {}): BYO {}, balance {} (granted {}, spent {})",
            st.at.format("%Y-%m-%d %H:%M:%S%.6f"),
            st.sequence,
            if st.byo_enabled { "on" } else { "off" },
            st.balance,
            st.granted,
            st.spent
        )?;
        for key in &st.keys {
            writeln!(self.out, "  active {} key {} ({})", key.provider, key.masked, key.key_id)?;
        }
        for (user, role) in &st.members {
            writeln!(self.out, "  member {user}: {role}")?;
        }
        Ok(())
    }
}

fn signed(credits: i64) -> String {
    if credits > 0 {
        format!("+{credits}")
    } else {
        credits.to_string()
    }
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(width - 1).collect();
        cut.push('~');
        cut
    }
}

fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}
