//! How hard each suite pushes: light by default (the whole default run of
//! `cargo test --workspace` stays within minutes on two cores), heavy with
//! `BILLING_CI_LONG=1` (what `.ci/run --long` sets).
//!
//! Every suite also appends its figures to the file named by
//! `BILLING_RELIABILITY_FIGURES`, when set, so that the table of
//! docs/reliability.md is filled from a real run rather than by hand.

use std::io::Write;

/// True when `BILLING_CI_LONG` asks for the heavy versions.
pub fn long() -> bool {
    std::env::var("BILLING_CI_LONG").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `light` in the default run, `heavy` in the long one.
pub fn pick<T>(light: T, heavy: T) -> T {
    if long() {
        heavy
    } else {
        light
    }
}

/// Appends one line of figures (`suite`, then `name=value` pairs) to
/// `BILLING_RELIABILITY_FIGURES`, if set, and prints it to the test output.
pub fn record(suite: &str, figures: &[(&str, u64)]) {
    let pairs: Vec<String> = figures.iter().map(|(name, value)| format!("{name}={value}")).collect();
    let line = format!("{suite} long={} {}", u8::from(long()), pairs.join(" "));
    println!("figures: {line}");
    let Ok(path) = std::env::var("BILLING_RELIABILITY_FIGURES") else { return };
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(file, "{line}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pick_follows_the_flag() {
        // The variable is read, never written, by the suites: this test only
        // checks the default of the process it runs in.
        let expected = if super::long() { 2 } else { 1 };
        assert_eq!(super::pick(1, 2), expected);
    }
}
