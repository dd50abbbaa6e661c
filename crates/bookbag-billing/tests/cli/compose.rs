//! docker-compose.yml parses and wires the engine through the contract's
//! variables: every `BILLING_*` variable the binary reads is given to the
//! engine's service (the list is read from the binary's own source, so a
//! new setting is checked by default).

use yaml_rust2::{Yaml, YamlLoader};

fn repo(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    std::fs::read_to_string(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()))
}

/// Every `env = "BILLING_..."` of the settings.
fn variables_the_binary_reads() -> Vec<String> {
    let source = repo("crates/bookbag-billing/src/config.rs");
    let found: Vec<String> = source
        .split("env = \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|name| name.starts_with("BILLING_"))
        .map(str::to_owned)
        .collect();
    assert!(found.len() >= 10, "{found:?}");
    found
}

#[test]
fn compose_names_the_services_and_every_variable() {
    let docs = YamlLoader::load_from_str(&repo("docker-compose.yml")).expect("docker-compose.yml is YAML");
    let services = &docs[0]["services"];
    for service in ["postgres", "nats", "billing", "projector"] {
        assert!(!services[service].is_badvalue(), "service {service} missing");
    }
    assert!(
        services["nats"]["command"].as_vec().unwrap().contains(&Yaml::String("-js".into())),
        "NATS without JetStream"
    );
    let billing = services["billing"]["environment"].as_hash().expect("billing environment");
    let given: Vec<&str> = billing.keys().filter_map(Yaml::as_str).collect();
    // BILLING_CONFIG names a file of these same settings: compose gives them directly.
    for variable in variables_the_binary_reads().iter().filter(|v| *v != "BILLING_CONFIG") {
        assert!(given.contains(&variable.as_str()), "compose does not give the engine {variable}");
    }
    for variable in &given {
        assert!(variable.starts_with("BILLING_") || *variable == "RUST_LOG", "unknown variable {variable}");
    }
    let url = billing[&Yaml::String("BILLING_DATABASE_URL".into())].as_str().unwrap();
    assert!(url.starts_with("postgres://") && url.contains("@postgres:5432/"), "{url}");
    assert_eq!(billing[&Yaml::String("BILLING_NATS_URL".into())].as_str(), Some("nats://nats:4222"));
    assert_eq!(services["billing"]["build"].as_str(), Some("."));
    let dockerfile = repo("Dockerfile");
    assert!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")) >= 2,
        "not multi-stage"
    );
    assert!(dockerfile.contains("cargo build --release"));
}
