//! What a step came to, as the run keeps it while it runs: the run's working state, in its
//! own types. The gate reads it (how many artifacts each hat wrote); the report's
//! [`StepReport`] is built from it once, when the run is assembled
//! ([`StepOutcome::into_report`]), and nothing reads a report back while the run goes on.

use crate::model::prices::Prices;
use crate::model::structured::StructuredOutcome;
use crate::model::{ReplySource, Usage};
use crate::report::{ArtifactReport, Cost, StepReport, TokenUsage};
use crate::verdict::{StepKind, StepStatus};

use super::artifacts::WrittenArtifact;
use super::steps::Step;

/// Where a step's answers came from: every attempt live, every attempt replayed, or some of
/// each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Live,
    Replayed,
    Mixed,
}

impl Origin {
    /// The origin of a step's attempts (no attempt at all reads as `live`).
    pub fn of(sources: &[ReplySource]) -> Origin {
        let replayed = sources
            .iter()
            .filter(|s| **s == ReplySource::Replayed)
            .count();
        match replayed {
            0 => Origin::Live,
            n if n == sources.len() => Origin::Replayed,
            _ => Origin::Mixed,
        }
    }

    /// `live`, `replayed` or `mixed`: the word reports and the progress line show.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Live => "live",
            Origin::Replayed => "replayed",
            Origin::Mixed => "mixed",
        }
    }
}

/// One step's outcome: what it was, how it ended, what it cost, and what it wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    /// `hat/pipeline-engineer`, `judge/pipeline-engineer`, `review/reliability`, `signal`.
    pub id: String,
    pub kind: StepKind,
    /// Hat or agent name; `completion judge` for the signal step.
    pub name: String,
    /// The model this step asked.
    pub model: String,
    pub status: StepStatus,
    /// Model requests made (re-asks and samples included).
    pub attempts: u32,
    pub usage: Usage,
    pub duration_ms: u64,
    /// Where the answers were first obtained, so a replay reports what the recorded run did.
    pub origin: Origin,
    /// The step's own short summary, as the model wrote it.
    pub summary: Option<String>,
    /// The artifacts a hat wrote (none for a judging step).
    pub artifacts: Vec<WrittenArtifact>,
    /// Why attempts were rejected, and why the step's request did not fit, in order.
    pub errors: Vec<String>,
    /// The agent's tool calls, in order (empty without tools).
    pub trail: Vec<crate::tools::Trail>,
    /// How tools were used when not as an agent: refused by the provider, unused by the model.
    pub tools: Option<String>,
}

impl StepOutcome {
    /// A step's outcome over its model exchanges (one per sample); `answered` when at least
    /// one gave a schema-valid answer.
    pub fn of(
        step: &Step<'_>,
        model: &str,
        outcomes: &[&StructuredOutcome],
        answered: bool,
    ) -> StepOutcome {
        let mut usage = Usage::default();
        let mut origins = Vec::new();
        let mut errors = Vec::new();
        let mut attempts = 0;
        let mut duration_ms = 0;
        let mut overflowed = false;
        for o in outcomes {
            overflowed |= o.overflow.is_some();
            usage.add(&o.usage);
            origins.extend(o.origins.iter().copied());
            errors.extend(o.errors.iter().cloned());
            errors.extend(o.overflow.iter().cloned());
            attempts = u32::saturating_add(attempts, o.attempts);
            duration_ms = u64::saturating_add(duration_ms, o.duration_ms);
        }
        StepOutcome {
            id: step.id.clone(),
            kind: step.kind(),
            name: step.name(),
            model: model.to_string(),
            status: match (answered, overflowed) {
                (true, _) => StepStatus::Answered,
                (false, true) => StepStatus::ContextExceeded,
                (false, false) => StepStatus::Unparseable,
            },
            attempts,
            usage,
            duration_ms,
            origin: Origin::of(&origins),
            summary: None,
            artifacts: Vec::new(),
            errors,
            trail: Vec::new(),
            tools: None,
        }
    }

    /// The step as report.json shows it, with its cost when the run has prices.
    pub fn into_report(self, cost: Option<Cost>) -> StepReport {
        StepReport {
            id: self.id,
            kind: self.kind,
            name: self.name,
            model: self.model,
            status: self.status,
            attempts: self.attempts,
            usage: token_usage(&self.usage),
            duration_ms: self.duration_ms,
            cost,
            source: self.origin.as_str().to_string(),
            summary: self.summary,
            artifacts: self
                .artifacts
                .into_iter()
                .map(|a| ArtifactReport {
                    path: a.path,
                    bytes: a.bytes,
                    sha256: a.sha256,
                })
                .collect(),
            errors: self.errors,
            trail: self.trail,
            tools: self.tools,
        }
    }
}

/// A usage as report.json counts it.
pub fn token_usage(u: &Usage) -> TokenUsage {
    TokenUsage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        cached_tokens: u.cached_tokens,
    }
}

/// Each step's tokens priced at its model's rates (in step order), and the run's total:
/// unknown as soon as one step's model has no price (never counted as 0).
pub fn price(prices: &Prices, steps: &[StepOutcome]) -> (Vec<Cost>, Cost) {
    let mut total = Some(0.0);
    let mut unpriced: Vec<String> = Vec::new();
    let mut each = Vec::with_capacity(steps.len());
    for s in steps {
        let usd = prices.cost(&s.model, &s.usage);
        if usd.is_none() && !unpriced.contains(&s.model) {
            unpriced.push(s.model.clone());
        }
        total = total.zip(usd).map(|(t, c)| t + c);
        each.push(Cost {
            usd,
            unpriced_models: if usd.is_none() {
                vec![s.model.clone()]
            } else {
                Vec::new()
            },
        });
    }
    let total = Cost {
        usd: total,
        unpriced_models: unpriced,
    };
    (each, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(model: &str, prompt_tokens: u64) -> StepOutcome {
        StepOutcome {
            id: "hat/a".into(),
            kind: StepKind::Hat,
            name: "a".into(),
            model: model.into(),
            status: StepStatus::Answered,
            attempts: 1,
            usage: Usage {
                prompt_tokens,
                completion_tokens: 0,
                cached_tokens: 0,
            },
            duration_ms: 5,
            origin: Origin::Replayed,
            summary: None,
            artifacts: vec![WrittenArtifact {
                path: "artifacts/a/x.md".into(),
                bytes: 3,
                sha256: "00".into(),
            }],
            errors: Vec::new(),
            trail: Vec::new(),
            tools: None,
        }
    }

    #[test]
    fn the_origin_of_a_step_is_live_replayed_or_mixed() {
        use ReplySource::{Live, Replayed};
        assert_eq!(Origin::of(&[]), Origin::Live);
        assert_eq!(Origin::of(&[Live, Live]), Origin::Live);
        assert_eq!(Origin::of(&[Replayed, Replayed]), Origin::Replayed);
        assert_eq!(Origin::of(&[Live, Replayed]).as_str(), "mixed");
    }

    #[test]
    fn the_report_says_what_the_outcome_holds() {
        let r = outcome("m", 7).into_report(None);
        assert_eq!(r.source, "replayed");
        assert_eq!(r.usage.prompt_tokens, 7);
        assert_eq!(r.artifacts.len(), 1);
        assert_eq!(r.artifacts[0].path, "artifacts/a/x.md");
        assert!(r.cost.is_none());
    }

    #[test]
    fn one_unpriced_model_makes_the_total_unknown() {
        let prices = Prices::parse(
            r#"{"m": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}"#,
            std::path::Path::new("p.json"),
        )
        .unwrap();
        let (each, total) = price(&prices, &[outcome("m", 1000), outcome("other", 1)]);
        assert_eq!(each[0].usd, Some(1e-3));
        assert_eq!(each[1].usd, None);
        assert_eq!(each[1].unpriced_models, vec!["other".to_string()]);
        assert_eq!(total.usd, None);
        assert_eq!(total.unpriced_models, vec!["other".to_string()]);
    }
}
