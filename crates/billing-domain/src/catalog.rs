//! The model catalog: which models exist, who runs them and what a reply
//! costs in credits. Loaded once from TOML; a bad file stops start-up.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::ids::ModelId;
use crate::keys::Provider;
use crate::money::Credits;

/// The catalog shipped in the repository (`models.toml`).
pub const DEFAULT_CATALOG_TOML: &str = include_str!("../../../models.toml");

/// Most models a catalog may list; a bound on memory and on `GET /v1/models`.
pub const CATALOG_MODELS_MAX: usize = 10_000;

/// Who runs a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelProvider {
    Openai,
    Anthropic,
    Local,
}

impl ModelProvider {
    /// The provider whose key a BYO reply needs; `None` for the Local model.
    pub fn key_provider(self) -> Option<Provider> {
        match self {
            ModelProvider::Openai => Some(Provider::Openai),
            ModelProvider::Anthropic => Some(Provider::Anthropic),
            ModelProvider::Local => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ModelProvider::Openai => "openai",
            ModelProvider::Anthropic => "anthropic",
            ModelProvider::Local => "local",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub id: ModelId,
    pub provider: ModelProvider,
    pub credit_cost: Credits,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Catalog {
    models: BTreeMap<ModelId, ModelSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    models: Vec<RawModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    id: String,
    provider: String,
    credit_cost: i64,
}

impl Catalog {
    /// Parses the contract's TOML format. Errors name the model and field.
    pub fn from_toml(text: &str) -> Result<Catalog, String> {
        let file: CatalogFile = toml::from_str(text).map_err(|e| format!("model catalog: {e}"))?;
        if file.models.len() > CATALOG_MODELS_MAX {
            return Err(format!("model catalog: more than {CATALOG_MODELS_MAX} models"));
        }
        let mut models = BTreeMap::new();
        for raw in file.models {
            let id = ModelId::parse(&raw.id).map_err(|e| format!("model catalog: model id {:?}: {e}", raw.id))?;
            let provider = match raw.provider.as_str() {
                "openai" => ModelProvider::Openai,
                "anthropic" => ModelProvider::Anthropic,
                "local" => ModelProvider::Local,
                other => {
                    return Err(format!(
                        "model catalog: model {id}: unknown provider {other:?} (expected openai, anthropic or local)"
                    ))
                }
            };
            let cost = u64::try_from(raw.credit_cost)
                .map_err(|_| format!("model catalog: model {id}: credit_cost must be >= 0"))?;
            let spec = ModelSpec { id: id.clone(), provider, credit_cost: Credits::new(cost) };
            if models.insert(id.clone(), spec).is_some() {
                return Err(format!("model catalog: model {id} is listed twice"));
            }
        }
        Ok(Catalog { models })
    }

    pub fn shipped() -> Catalog {
        Catalog::from_toml(DEFAULT_CATALOG_TOML).expect("the shipped catalog is valid (tested)")
    }

    pub fn get(&self, id: &str) -> Option<&ModelSpec> {
        ModelId::parse(id).ok().and_then(|id| self.models.get(&id))
    }

    pub fn models(&self) -> impl Iterator<Item = &ModelSpec> {
        self.models.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_catalog_parses_and_has_every_provider() {
        let catalog = Catalog::shipped();
        for provider in [ModelProvider::Openai, ModelProvider::Anthropic, ModelProvider::Local] {
            assert!(catalog.models().any(|m| m.provider == provider), "{provider:?} missing");
        }
    }

    #[test]
    fn bad_catalogs_are_clear_errors() {
        let unknown = Catalog::from_toml("[[models]]\nid='x'\nprovider='mistral'\ncredit_cost=1\n").unwrap_err();
        assert!(unknown.contains("unknown provider") && unknown.contains("mistral"), "{unknown}");
        let negative = Catalog::from_toml("[[models]]\nid='x'\nprovider='openai'\ncredit_cost=-1\n").unwrap_err();
        assert!(negative.contains("credit_cost must be >= 0"), "{negative}");
        let twice = Catalog::from_toml(
            "[[models]]\nid='x'\nprovider='openai'\ncredit_cost=1\n[[models]]\nid='x'\nprovider='local'\ncredit_cost=0\n",
        )
        .unwrap_err();
        assert!(twice.contains("twice"), "{twice}");
        assert!(Catalog::from_toml("[[models]]\nid='a b'\nprovider='openai'\ncredit_cost=1\n").is_err());
    }
}
