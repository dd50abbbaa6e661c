//! The benchmark's table: one row per measure, with its target and, where
//! there is one, its ratio to a baseline measured in the same run.

use std::fmt;

#[derive(Clone, Debug)]
pub struct Row {
    pub measure: String,
    pub figure: String,
    pub target: String,
    /// `Some(true)` met, `Some(false)` missed, `None` no target.
    pub met: Option<bool>,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Correctness checks that failed (empty: all passed).
    pub failures: Vec<String>,
    pub checks: u64,
}

impl Report {
    pub fn row(
        &mut self,
        measure: impl Into<String>,
        figure: impl Into<String>,
        target: impl Into<String>,
        met: Option<bool>,
    ) {
        self.rows.push(Row { measure: measure.into(), figure: figure.into(), target: target.into(), met });
    }

    pub fn check(&mut self, ok: bool, what: impl Into<String>) {
        self.checks += 1;
        if !ok {
            self.failures.push(what.into());
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths = self
            .rows
            .iter()
            .fold((7, 6, 6), |(a, b, c), r| (a.max(r.measure.len()), b.max(r.figure.len()), c.max(r.target.len())));
        writeln!(
            f,
            "| {:<a$} | {:<b$} | {:<c$} | met |",
            "measure",
            "figure",
            "target",
            a = widths.0,
            b = widths.1,
            c = widths.2
        )?;
        writeln!(f, "|{}|{}|{}|-----|", "-".repeat(widths.0 + 2), "-".repeat(widths.1 + 2), "-".repeat(widths.2 + 2))?;
        for r in &self.rows {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            };
            writeln!(
                f,
                "| {:<a$} | {:<b$} | {:<c$} | {met:<3} |",
                r.measure,
                r.figure,
                r.target,
                a = widths.0,
                b = widths.1,
                c = widths.2
            )?;
        }
        if self.failures.is_empty() {
            writeln!(
                f,
                "\ncorrectness: {} checks passed (no double charge, no negative balance, events == acknowledged)",
                self.checks
            )
        } else {
            writeln!(f, "\ncorrectness: {} of {} checks FAILED:", self.failures.len(), self.checks)?;
            for failure in &self.failures {
                writeln!(f, "  - {failure}")?;
            }
            Ok(())
        }
    }
}
