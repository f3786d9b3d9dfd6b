//! Model prices (`--prices FILE`) and the spending cap (`--budget-usd`). hatrack ships no
//! price table: the user brings one, either LiteLLM's model-prices JSON
//! (`{ "gpt-4o-mini": { "input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7, … } }`)
//! or a small TOML of USD per million tokens:
//!
//! ```toml
//! ["gpt-4o-mini"]
//! input = 0.15    # USD per million prompt tokens
//! output = 0.60   # USD per million completion tokens
//! ```
//!
//! A model the table does not price has an **unknown** cost, never 0. Cached prompt tokens
//! (`usage.prompt_tokens_details.cached_tokens`) are priced at the cached-input price when
//! the table has one (LiteLLM's `cache_read_input_token_cost`, or `cached_input` per million
//! in the TOML form), else as ordinary prompt tokens (an upper bound).
//!
//! [`UsdBudget`] refuses a request before it is sent when its estimated cost (the token
//! budget's estimate: prompt characters / 4, plus `max_tokens`) could push the run over the
//! cap; actual usage replaces the estimate once the reply arrives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::budget::DEFAULT_COMPLETION_ESTIMATE;
use super::request::messages_text_len;
use super::{BoxFuture, ChatModel, ModelError, ModelReply, ModelRequest};

/// USD per token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Per prompt token served from the provider's cache, when the table says.
    pub cached_input: Option<f64>,
}

impl Price {
    /// The cost of `usage`: uncached prompt tokens at the input price, cached ones at the
    /// cached-input price (the input price without one), completion at the output price.
    pub fn cost(&self, usage: &super::Usage) -> f64 {
        let cached = usage.cached_tokens.min(usage.prompt_tokens);
        let fresh = usage.prompt_tokens - cached;
        fresh as f64 * self.input
            + cached as f64 * self.cached_input.unwrap_or(self.input)
            + usage.completion_tokens as f64 * self.output
    }
}

/// A price table, by model name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices {
    models: BTreeMap<String, Price>,
    /// The file it was read from, as given.
    pub source: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("--prices {}: {message}", .path.display())]
    Read { path: PathBuf, message: String },
    #[error("--prices {}: {message}; use LiteLLM's model-prices JSON ({{\"model\": {{\"input_cost_per_token\": …, \"output_cost_per_token\": …}}}}) or TOML tables of USD per million tokens ([\"model\"] input = 0.15, output = 0.60)", .path.display())]
    Format { path: PathBuf, message: String },
}

/// One entry of LiteLLM's JSON (other keys ignored).
#[derive(Deserialize)]
struct LiteLlmEntry {
    input_cost_per_token: Option<f64>,
    output_cost_per_token: Option<f64>,
    cache_read_input_token_cost: Option<f64>,
}

/// One table of the TOML form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlEntry {
    /// USD per million prompt tokens.
    input: f64,
    /// USD per million completion tokens.
    output: f64,
    /// USD per million prompt tokens served from the provider's cache.
    #[serde(default)]
    cached_input: Option<f64>,
}

fn valid(p: f64) -> bool {
    p.is_finite() && p >= 0.0
}

impl Prices {
    pub fn load(path: &Path) -> Result<Prices, PriceError> {
        use crate::safe_fs::{read_bounded_string, Kind, Links};
        let text = read_bounded_string(path, Kind::PRICES, Links::SameDir).map_err(|e| {
            PriceError::Read {
                path: path.to_path_buf(),
                message: e.why.to_string(),
            }
        })?;
        Prices::parse(&text, path)
    }

    /// JSON when the text starts with `{`, else TOML.
    pub fn parse(text: &str, path: &Path) -> Result<Prices, PriceError> {
        let format_err = |message: String| PriceError::Format {
            path: path.to_path_buf(),
            message,
        };
        let mut models = BTreeMap::new();
        if text.trim_start().starts_with('{') {
            let raw: BTreeMap<String, serde_json::Value> = serde_json::from_str(text)
                .map_err(|e| format_err(format!("line {}: {e}", e.line())))?;
            for (name, value) in raw {
                // LiteLLM's file has entries without prices (`sample_spec`, image models…).
                let Ok(entry) = serde_json::from_value::<LiteLlmEntry>(value) else {
                    continue;
                };
                if let (Some(input), Some(output)) =
                    (entry.input_cost_per_token, entry.output_cost_per_token)
                {
                    let cached_input = entry.cache_read_input_token_cost;
                    if !valid(input) || !valid(output) || !cached_input.is_none_or(valid) {
                        return Err(format_err(format!(
                            "{name:?}: prices must be finite and not negative"
                        )));
                    }
                    models.insert(
                        name,
                        Price {
                            input,
                            output,
                            cached_input,
                        },
                    );
                }
            }
        } else {
            let raw: BTreeMap<String, TomlEntry> = toml::from_str(text).map_err(|e| {
                let line = e
                    .span()
                    .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
                format_err(format!(
                    "{}{}",
                    line.map(|l| format!("line {l}: ")).unwrap_or_default(),
                    e.message().trim_end()
                ))
            })?;
            for (name, e) in raw {
                if !valid(e.input) || !valid(e.output) || !e.cached_input.is_none_or(valid) {
                    return Err(format_err(format!(
                        "[{name:?}]: prices must be finite and not negative"
                    )));
                }
                models.insert(
                    name,
                    Price {
                        input: e.input / 1e6,
                        output: e.output / 1e6,
                        cached_input: e.cached_input.map(|c| c / 1e6),
                    },
                );
            }
        }
        if models.is_empty() {
            return Err(format_err(
                "no model with both an input and an output price".into(),
            ));
        }
        Ok(Prices {
            models,
            source: path.to_path_buf(),
        })
    }

    /// The price of `model`: its exact name, else the one entry whose name after a provider
    /// prefix (`openai/gpt-4o-mini`) is `model`, or whose name is `model` after its prefix.
    pub fn get(&self, model: &str) -> Option<Price> {
        if let Some(p) = self.models.get(model) {
            return Some(*p);
        }
        let bare = |name: &str| name.rsplit('/').next().unwrap_or(name).to_string();
        let mut hits = self
            .models
            .iter()
            .filter(|(name, _)| bare(name) == bare(model));
        match (hits.next(), hits.next()) {
            (Some((_, p)), None) => Some(*p),
            _ => None,
        }
    }

    /// USD for this usage of `model`; `None` when the table does not price it.
    pub fn cost(&self, model: &str, usage: &super::Usage) -> Option<f64> {
        self.get(model).map(|p| p.cost(usage))
    }
}

/// A [`ChatModel`] that refuses requests once the spending cap could be exceeded.
pub struct UsdBudget {
    inner: Arc<dyn ChatModel>,
    budget_usd: f64,
    prices: Arc<Prices>,
    state: Mutex<(f64, f64)>,
}

impl UsdBudget {
    pub fn new(inner: Arc<dyn ChatModel>, budget_usd: f64, prices: Arc<Prices>) -> UsdBudget {
        UsdBudget {
            inner,
            budget_usd,
            prices,
            state: Mutex::new((0.0, 0.0)),
        }
    }

    /// USD spent so far.
    pub fn spent(&self) -> f64 {
        self.lock().0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (f64, f64)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The estimated cost of a request: its prompt at 4 characters a token plus its
    /// `max_tokens` (or the token budget's default); unpriced models cost infinitely much.
    pub fn estimate(&self, body: &serde_json::Value) -> f64 {
        let model = body.get("model").and_then(|m| m.as_str()).unwrap_or("");
        let prompt = (messages_text_len(body) as u64).div_ceil(4);
        let completion = body
            .get("max_tokens")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(DEFAULT_COMPLETION_ESTIMATE);
        let usage = super::Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: 0,
        };
        self.prices.cost(model, &usage).unwrap_or(f64::INFINITY)
    }

    async fn complete_inner(&self, request: &ModelRequest) -> Result<ModelReply, ModelError> {
        let estimate = self.estimate(&request.body);
        {
            let mut state = self.lock();
            let (spent, reserved) = *state;
            if spent + reserved + estimate > self.budget_usd {
                return Err(ModelError::CostBudgetExceeded {
                    step: request.step.clone(),
                    budget_usd: self.budget_usd,
                    spent_usd: spent,
                    estimate_usd: estimate,
                });
            }
            state.1 += estimate;
        }
        let result = self.inner.complete(request).await;
        let mut state = self.lock();
        state.1 = (state.1 - estimate).max(0.0);
        if let Ok(reply) = &result {
            let model = request
                .body
                .get("model")
                .and_then(|m| m.as_str())
                .unwrap_or("");
            let cost = self.prices.cost(model, &reply.usage).unwrap_or(estimate);
            state.0 += cost;
        }
        result
    }
}

impl ChatModel for UsdBudget {
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>> {
        Box::pin(self.complete_inner(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn litellm_json_and_toml_per_million_give_the_same_prices() {
        let json = r#"{
            "sample_spec": { "input_cost_per_token": "price per token", "mode": "chat" },
            "gpt-4o-mini": { "input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7, "litellm_provider": "openai" },
            "dall-e-3": { "output_cost_per_image": 0.04 }
        }"#;
        let a = Prices::parse(json, Path::new("p.json")).unwrap();
        let b = Prices::parse(
            "[\"gpt-4o-mini\"]\ninput = 0.15\noutput = 0.60\n",
            Path::new("p.toml"),
        )
        .unwrap();
        let (pa, pb) = (a.get("gpt-4o-mini").unwrap(), b.get("gpt-4o-mini").unwrap());
        assert!((pa.input - pb.input).abs() < 1e-15 && (pa.output - pb.output).abs() < 1e-15);
        assert!(a.get("dall-e-3").is_none() && a.get("sample_spec").is_none());
        let million = crate::model::Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 1_000_000,
            cached_tokens: 0,
        };
        let cost = a.cost("gpt-4o-mini", &million).unwrap();
        assert!((cost - 0.75).abs() < 1e-9, "{cost}");
    }

    #[test]
    fn cached_prompt_tokens_cost_the_cached_price_when_the_table_has_one() {
        let json = r#"{"m": {"input_cost_per_token": 1e-6, "output_cost_per_token": 4e-6, "cache_read_input_token_cost": 1e-7},
                       "plain": {"input_cost_per_token": 1e-6, "output_cost_per_token": 4e-6}}"#;
        let a = Prices::parse(json, Path::new("p.json")).unwrap();
        let b = Prices::parse(
            "[m]\ninput = 1.0\noutput = 4.0\ncached_input = 0.1\n",
            Path::new("p.toml"),
        )
        .unwrap();
        let usage = crate::model::Usage {
            prompt_tokens: 1_000,
            completion_tokens: 100,
            cached_tokens: 600,
        };
        // 400 fresh at 1e-6, 600 cached at 1e-7, 100 out at 4e-6.
        let expected = 400.0 * 1e-6 + 600.0 * 1e-7 + 100.0 * 4e-6;
        for prices in [&a, &b] {
            let cost = prices.cost("m", &usage).unwrap();
            assert!((cost - expected).abs() < 1e-15, "{cost} != {expected}");
        }
        // Without a cached price, cached tokens cost what other prompt tokens cost.
        let plain = a.cost("plain", &usage).unwrap();
        assert!((plain - (1_000.0 * 1e-6 + 100.0 * 4e-6)).abs() < 1e-15);
    }

    #[test]
    fn an_unpriced_model_is_unknown_and_prefixes_match_only_when_unambiguous() {
        let p = Prices::parse(
            r#"{"openai/gpt-4o": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
                "azure/gpt-4o": {"input_cost_per_token": 3e-6, "output_cost_per_token": 4e-6},
                "openai/o3": {"input_cost_per_token": 5e-6, "output_cost_per_token": 6e-6}}"#,
            Path::new("p.json"),
        )
        .unwrap();
        assert_eq!(p.cost("llama-3", &crate::model::Usage::default()), None);
        assert_eq!(p.get("gpt-4o"), None, "two providers price gpt-4o");
        assert_eq!(p.get("o3").unwrap().input, 5e-6);
        assert_eq!(p.get("openai/gpt-4o").unwrap().input, 1e-6);
    }

    #[test]
    fn bad_tables_name_the_file_and_say_what_to_write() {
        let err = Prices::parse("[m]\ninput = 1\n", Path::new("prices.toml")).unwrap_err();
        assert!(
            err.to_string().starts_with("--prices prices.toml: "),
            "{err}"
        );
        assert!(err.to_string().contains("output"), "{err}");
        let err = Prices::parse("{}", Path::new("p.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no model"), "{err}");
        let err = Prices::parse(
            r#"{"m": {"input_cost_per_token": -1, "output_cost_per_token": 1}}"#,
            Path::new("p.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not negative"), "{err}");
    }
}
