//! `bookbag-billing bench` as a user runs it, at a tiny scale: it must end
//! with its correctness checks passed (they compare the events with what
//! was acknowledged and the projections with the events), print a row per
//! measure, and refuse bad arguments with exit 2. Speed is not asserted.

use crate::helpers::*;

#[test]
fn a_tiny_bench_ends_with_every_correctness_check_passed() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["bench", "--scenarios", "sqlite,history,choices", "--scale", "0.002"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for row in [
        "replies/s, SQLite embedded default",
        "replies/s, workspace with",
        "choice: without group commit",
        "choice: without aggregates in memory",
    ] {
        assert!(stdout.contains(row), "no row {row:?}: {stdout}");
    }
    let checks: u64 = stdout
        .split("correctness: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no correctness line: {stdout}"));
    // sqlite 3, history 3, choices 3 per configuration and round.
    assert_eq!(checks, 3 + 3 + 3 * 5 * 2, "{stdout}");
    assert!(stdout.contains("checks passed"), "{stdout}");
    // Progress is shown while it runs.
    assert!(stderr.contains("== scenario sqlite"), "{stderr}");
}

#[test]
fn bench_refuses_an_unknown_scenario_and_a_bad_scale() {
    let dir = tempfile::tempdir().unwrap();
    for args in [["bench", "--scenarios", "nope"], ["bench", "--scale", "0"]] {
        let out = run(dir.path(), &args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
