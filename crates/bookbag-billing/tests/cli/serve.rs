//! `serve` as a newcomer runs it: the README's walk-through, verbatim,
//! against the embedded default; graceful shutdown; restart; the audit
//! commands' exit codes on the same database.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::helpers::*;

/// The ```sh block of the README's walk-through.
fn walkthrough() -> String {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let section = readme.split("## Walk-through").nth(1).expect("a walk-through section");
    let block = section.split("```sh\n").nth(1).expect("a sh block");
    block.split("```").next().unwrap().to_owned()
}

#[test]
fn the_readme_walkthrough_runs_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let out = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(walkthrough())
        .current_dir(dir.path())
        .env("B", &server.base)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "walk-through failed: {stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let answers: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers[2]["route"], "credits");
    assert_eq!(answers[2]["balance"], 95);
    assert_eq!(answers[3]["masked"], "sk-proj-...0042");
    assert_eq!(answers[5]["route"], "byo");
    assert_eq!(answers[5]["credits_charged"], 0);
    assert_eq!(answers[5]["api_key"], "sk-proj-walkthroughEXAMPLEkey0042");
    let ledger = answers[6]["entries"].as_array().unwrap();
    assert_eq!(ledger.iter().map(|e| e["amount"].as_i64().unwrap()).collect::<Vec<_>>(), vec![100, -5]);
    assert_eq!(answers[7]["providers"]["openai"]["active_key"], "sk-proj-...0042");

    // Tokens were generated into data/ with mode 0600; their paths are in
    // the log, their values are not, and neither is the key.
    let log = server.log();
    for file in ["api-token", "runtime-token", "master-key"] {
        let path = dir.path().join("data").join(file);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
        let value = std::fs::read_to_string(&path).unwrap();
        assert!(!log.contains(value.trim()), "the log holds the value of {file}");
        assert!(log.contains(&format!("data/{file}")), "the log does not name {file}'s path");
    }
    assert!(!log.contains("walkthroughEXAMPLEkey"), "the log holds the provider key");

    // Graceful shutdown: SIGTERM exits 0.
    assert_eq!(server.terminate(), Some(0));

    // A restart on the same file keeps everything.
    let server = Server::start(dir.path(), &[]);
    let token = std::fs::read_to_string(dir.path().join("data/api-token")).unwrap();
    let ledger = Command::new("curl")
        .args([
            "-sf",
            &format!("{}/v1/workspaces/acme/credits", server.base),
            "-H",
            &format!("Authorization: Bearer {}", token.trim()),
        ])
        .output()
        .unwrap();
    let credits: serde_json::Value = serde_json::from_slice(&ledger.stdout).unwrap();
    assert_eq!(credits, serde_json::json!({"balance": 95, "granted": 100, "spent": 5}));
    assert_eq!(server.terminate(), Some(0));

    // The audit commands on the same database.
    let replay = run(dir.path(), &["audit", "replay", "--workspace", "acme"], &[]);
    let table = String::from_utf8_lossy(&replay.stdout);
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    assert!(table.contains("Statement of workspace acme") && table.contains("closing balance 95"), "{table}");
    assert!(!table.contains("walkthroughEXAMPLEkey"));
    let csv = run(dir.path(), &["audit", "replay", "--workspace", "acme", "--format", "csv"], &[]);
    assert_eq!(String::from_utf8_lossy(&csv.stdout).lines().count(), 1 + 6);
    assert_eq!(
        run(dir.path(), &["audit", "replay", "--workspace", "acme", "--format", "xml"], &[]).status.code(),
        Some(2)
    );
    let clean = run(dir.path(), &["audit", "verify"], &[]);
    assert_eq!(clean.status.code(), Some(0), "{}", String::from_utf8_lossy(&clean.stdout));

    // Tamper with the file directly: verify names the place and exits 1.
    let db = dir.path().join("bookbag-billing.db");
    let sql =
        "UPDATE events SET payload = json_set(payload, '$.amount', 1000) WHERE sequence = 2 AND aggregate_id = 'acme';";
    let tamper = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import sqlite3; c = sqlite3.connect({:?}); c.execute({sql:?}); c.commit()",
                db.display().to_string()
            ),
        ])
        .output()
        .unwrap();
    assert!(tamper.status.success(), "{}", String::from_utf8_lossy(&tamper.stderr));
    let found = run(dir.path(), &["audit", "verify"], &[]);
    let report = String::from_utf8_lossy(&found.stdout);
    assert_eq!(found.status.code(), Some(1), "{report}");
    assert!(report.contains("workspace acme, sequence 2: payload changed"), "{report}");
    assert!(report.contains("projection row disagrees") || report.contains("payload changed"), "{report}");
}
