//! Verdict stability: a judging step asked N times (different seeds) gives N verdicts per
//! requirement; the majority is the verdict, and agreement below a threshold is unstable.

use crate::model::settings::ModelSettings;
use crate::verdict::{Agreement, Cause, Evidence, Judged, Verdict};

/// One sample's verdict on one requirement, after grounding.
#[derive(Debug, Clone)]
pub struct SampledVerdict {
    pub claimed: Verdict,
    pub verdict: Verdict,
    pub cause: Option<Cause>,
    pub finding: String,
    pub severity: Option<String>,
    pub evidence: Vec<Evidence>,
}

/// Sample k uses seed + k (wrapping at the ends of i64, so a seed near i64::MAX cannot
/// overflow), so every sample is a distinct, replayable request.
pub fn settings_for(base: &ModelSettings, k: u32) -> ModelSettings {
    let mut s = base.clone();
    if k > 0 {
        s.seed = Some(base.seed.unwrap_or(0).wrapping_add(i64::from(k)));
    }
    s
}

/// The majority verdict and how many samples agree with it. It fails closed: a tie that
/// includes `unmet` is `unmet` (a judge's "no" is never outvoted by an equal number of
/// "yes"), any other tie is `unknown`; and samples that could not tell never hide a ruling of
/// `unmet` — an `unknown` majority with any `unmet` sample is `unmet` (so `--allow-unknown`
/// cannot let it through).
pub fn majority(verdicts: &[Verdict]) -> (Verdict, u32, bool) {
    let count = |v: Verdict| verdicts.iter().filter(|x| **x == v).count() as u32;
    let mut tally = [
        (Verdict::Met, count(Verdict::Met)),
        (Verdict::Unmet, count(Verdict::Unmet)),
        (Verdict::Unknown, count(Verdict::Unknown)),
    ];
    tally.sort_by_key(|t| std::cmp::Reverse(t.1));
    if tally[0].1 == tally[1].1 {
        let top = tally[0].1;
        if count(Verdict::Unmet) == top {
            return (Verdict::Unmet, top, true);
        }
        return (Verdict::Unknown, count(Verdict::Unknown), true);
    }
    if tally[0].0 == Verdict::Unknown && count(Verdict::Unmet) > 0 {
        return (Verdict::Unmet, count(Verdict::Unmet), false);
    }
    (tally[0].0, tally[0].1, false)
}

/// Fills a requirement's verdict, finding and evidence from its samples. With one sample
/// there is no agreement to report.
pub fn apply(r: &mut Judged, samples: &[SampledVerdict], threshold: f64) {
    let Some(first) = samples.first() else { return };
    let verdicts: Vec<Verdict> = samples.iter().map(|s| s.verdict).collect();
    let (verdict, agree, tied) = majority(&verdicts);
    let chosen = samples
        .iter()
        .find(|s| s.verdict == verdict)
        .unwrap_or(first);
    r.verdict = verdict;
    r.claimed = chosen.claimed;
    r.finding = chosen.finding.clone();
    r.severity = chosen.severity.clone();
    r.evidence = chosen.evidence.clone();
    r.cause = match (tied, chosen.verdict == verdict) {
        (true, false) => Some(Cause::SamplesTied),
        // An unmet by a tie: the tie is why it is unmet.
        (true, true) if verdict == Verdict::Unmet => Some(Cause::SamplesTied),
        _ => chosen.cause.clone(),
    };
    if samples.len() > 1 {
        let n = samples.len() as u32;
        r.agreement = Some(Agreement {
            agree,
            samples: n,
            unstable: f64::from(agree) / f64::from(n) < threshold,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::*;

    #[test]
    fn seeds_wrap_instead_of_overflowing() {
        let mut base = ModelSettings {
            seed: Some(i64::MAX),
            ..ModelSettings::default()
        };
        assert_eq!(settings_for(&base, 1).seed, Some(i64::MIN));
        assert_eq!(settings_for(&base, 0).seed, Some(i64::MAX));
        base.seed = Some(41);
        assert_eq!(
            settings_for(&base, u32::MAX).seed,
            Some(41 + i64::from(u32::MAX))
        );
    }

    #[test]
    fn majority_counts_agreement_and_ties_fail_closed() {
        assert_eq!(majority(&[Met, Met, Unmet, Met, Unmet]), (Met, 3, false));
        assert_eq!(majority(&[Met, Unmet]), (Unmet, 1, true));
        assert_eq!(majority(&[Unknown, Unmet]), (Unmet, 1, true));
        assert_eq!(majority(&[Met, Unknown]), (Unknown, 1, true));
        assert_eq!(
            majority(&[Met, Met, Unmet, Unmet, Unknown]),
            (Unmet, 2, true)
        );
        assert_eq!(majority(&[Unknown, Unknown, Met]), (Unknown, 2, false));
        assert_eq!(majority(&[Unknown, Unknown, Unmet]), (Unmet, 1, false));
        assert_eq!(
            majority(&[Unknown, Unknown, Unknown, Unmet, Met]),
            (Unmet, 1, false)
        );
    }
}
