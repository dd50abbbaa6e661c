//! Configuration errors stop start-up with exit 2 and a message that names
//! the variable and what it expects.

use crate::helpers::*;

#[test]
fn help_lists_every_subcommand_of_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["--help"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for sub in ["serve", "migrate", "audit", "projections", "project", "bench"] {
        assert!(text.contains(sub), "--help lacks {sub}: {text}");
    }
    let audit = String::from_utf8(run(dir.path(), &["audit", "--help"], &[]).stdout).unwrap();
    assert!(audit.contains("replay") && audit.contains("verify"), "{audit}");
    let rebuild = String::from_utf8(run(dir.path(), &["projections", "--help"], &[]).stdout).unwrap();
    assert!(rebuild.contains("rebuild"), "{rebuild}");
}

#[test]
fn bad_values_name_their_variable_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad_catalog = dir.path().join("models.toml");
    std::fs::write(&bad_catalog, "[[models]]\nid = \"x\"\nprovider = \"openai\"\ncredit_cost = -1\n").unwrap();
    let bad_catalog = bad_catalog.to_string_lossy().into_owned();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("BILLING_LISTEN", "not-an-address")], "BILLING_LISTEN"),
        (vec![("BILLING_METERING", "sometimes")], "BILLING_METERING"),
        (vec![("BILLING_DATABASE_URL", "mysql://bob:hunter2@db/x")], "BILLING_DATABASE_URL"),
        (vec![("BILLING_MASTER_KEY", "not base64!")], "BILLING_MASTER_KEY"),
        (vec![("BILLING_API_TOKEN", "short")], "BILLING_API_TOKEN"),
        (vec![("BILLING_MODELS_FILE", bad_catalog.as_str())], "BILLING_MODELS_FILE"),
        (vec![("BILLING_LOG_FORMAT", "xml")], "BILLING_LOG_FORMAT"),
        (vec![("BILLING_NATS_STREAM", "has.dots")], "BILLING_NATS_STREAM"),
        (vec![("BILLING_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")], "BILLING_MASTER_KEY"),
        (
            vec![("BILLING_API_TOKEN", "0123456789abcdef0"), ("BILLING_RUNTIME_TOKEN", "0123456789abcdef0")],
            "must differ",
        ),
    ];
    for (env, named) in cases {
        let out = run(dir.path(), &["serve"], &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(named), "{env:?} does not name {named}: {stderr}");
        assert!(!stderr.contains("hunter2"), "a password reached a message: {stderr}");
    }
}

#[test]
fn a_settings_file_overrides_the_environment_and_a_flag_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("billing.toml");
    std::fs::write(&file, "metering = \"sideways\"\n").unwrap();
    let file = file.to_string_lossy().into_owned();
    let out = run(dir.path(), &["migrate", "--config", &file], &[("BILLING_METERING", "enabled")]);
    assert_eq!(out.status.code(), Some(2), "the file's bad value wins over the environment");
    let out = run(dir.path(), &["migrate", "--config", &file, "--metering", "disabled"], &[]);
    assert!(out.status.success(), "the flag wins over the file: {}", String::from_utf8_lossy(&out.stderr));
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "databse_url = \"sqlite://x\"\n").unwrap();
    let out = run(dir.path(), &["migrate", "--config", &unknown.to_string_lossy()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BILLING_CONFIG"));
}
