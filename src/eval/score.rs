//! Verdicts compared with labels, as numbers: pure data in, numbers out (no files, no
//! clock, no randomness but a fixed-seed bootstrap), so the same runs and labels always
//! give the same eval.json.
//!
//! The positive class is **unmet**: a defect the gate should catch. TPR is the share of
//! defects the judge called unmet (an abstention catches nothing), TNR the share of clean
//! items it called met. Cohen's κ is taken over expected {met, unmet} × got {met, unmet,
//! unknown}: an unknown never agrees with a label.

use serde::{Deserialize, Serialize};

use super::labels::Expected;

/// What a judge ended with, as eval sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Got {
    Met,
    Unmet,
    Unknown,
}

impl Got {
    pub fn as_str(self) -> &'static str {
        match self {
            Got::Met => "met",
            Got::Unmet => "unmet",
            Got::Unknown => "unknown",
        }
    }

    /// A verdict word of report.json; anything else (or nothing: the run ended without a
    /// verdict) is unknown.
    pub fn from_word(word: Option<&str>) -> Got {
        match word {
            Some("met") => Got::Met,
            Some("unmet") => Got::Unmet,
            _ => Got::Unknown,
        }
    }
}

/// How one labelled verdict went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Right,
    Wrong,
    /// The judge answered unknown where the label says met or unmet.
    Abstained,
    /// Labelled `any`: not scored.
    Unscored,
}

pub fn outcome(expected: Expected, got: Got) -> Outcome {
    match (expected, got) {
        (Expected::Any, _) => Outcome::Unscored,
        (_, Got::Unknown) => Outcome::Abstained,
        (Expected::Met, Got::Met) | (Expected::Unmet, Got::Unmet) => Outcome::Right,
        _ => Outcome::Wrong,
    }
}

/// Got counts for one expected class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub unmet: u32,
    pub met: u32,
    pub unknown: u32,
}

impl Row {
    pub fn total(&self) -> u32 {
        self.unmet + self.met + self.unknown
    }
}

/// Expected (met / unmet) × got (met / unmet / unknown). `any` labels are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// Defects: true positives (`unmet`), misses (`met`), abstentions.
    pub expected_unmet: Row,
    /// Clean items: false alarms (`unmet`), true negatives (`met`), abstentions.
    pub expected_met: Row,
}

impl Confusion {
    pub fn add(&mut self, expected: Expected, got: Got) {
        let row = match expected {
            Expected::Unmet => &mut self.expected_unmet,
            Expected::Met => &mut self.expected_met,
            Expected::Any => return,
        };
        match got {
            Got::Unmet => row.unmet += 1,
            Got::Met => row.met += 1,
            Got::Unknown => row.unknown += 1,
        }
    }

    pub fn of(pairs: impl IntoIterator<Item = (Expected, Got)>) -> Confusion {
        let mut c = Confusion::default();
        for (e, g) in pairs {
            c.add(e, g);
        }
        c
    }

    pub fn total(&self) -> u32 {
        self.expected_unmet.total() + self.expected_met.total()
    }

    /// The six cells in a fixed order (for the bootstrap).
    fn cells(&self) -> [u32; 6] {
        let (p, n) = (self.expected_unmet, self.expected_met);
        [p.unmet, p.met, p.unknown, n.unmet, n.met, n.unknown]
    }

    fn from_cells(c: [u32; 6]) -> Confusion {
        Confusion {
            expected_unmet: Row {
                unmet: c[0],
                met: c[1],
                unknown: c[2],
            },
            expected_met: Row {
                unmet: c[3],
                met: c[4],
                unknown: c[5],
            },
        }
    }
}

/// A proportion with its 95% Wilson score interval (`null`s when there is nothing to
/// count).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub count: u32,
    pub of: u32,
    pub value: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

impl Rate {
    pub fn new(count: u32, of: u32) -> Rate {
        match wilson(count, of) {
            Some((low, high)) => Rate {
                count,
                of,
                value: Some(round(f64::from(count) / f64::from(of))),
                low: Some(round(low)),
                high: Some(round(high)),
            },
            None => Rate {
                count,
                of,
                value: None,
                low: None,
                high: None,
            },
        }
    }
}

/// Every number of one group of labelled verdicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Labelled met or unmet (an `any` label is not an item).
    pub items: u32,
    pub confusion: Confusion,
    /// Defects caught: expected unmet, got unmet.
    pub tpr: Rate,
    /// Clean items passed: expected met, got met.
    pub tnr: Rate,
    /// Of the items called unmet, the share that were defects.
    pub precision: Option<f64>,
    /// Items answered unknown.
    pub abstention: Rate,
    /// Right verdicts over all items.
    pub accuracy: Option<f64>,
    /// The accuracy of always answering the more frequent label (`majority_class`): an
    /// accuracy is only worth what it adds to this.
    pub majority_baseline: Option<f64>,
    pub majority_class: Option<Expected>,
    /// Cohen's κ between labels and verdicts (`null` when undefined: one class only, on
    /// both sides).
    pub kappa: Option<f64>,
    /// Its 95% percentile bootstrap interval (items resampled, fixed seed).
    pub kappa_low: Option<f64>,
    pub kappa_high: Option<f64>,
    /// With samples: the mean share of samples that disagreed with the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_flip_rate: Option<f64>,
}

/// Bootstrap resamples for κ's interval.
pub const BOOTSTRAP: u32 = 1000;
/// The bootstrap's seed: fixed, so the interval is the same on every run.
pub const SEED: u64 = 0x6861_7472_6163_6b21;

impl Metrics {
    pub fn of(c: Confusion) -> Metrics {
        let (p, n) = (c.expected_unmet, c.expected_met);
        let items = c.total();
        let right = p.unmet + n.met;
        let (majority_class, majority) = if items == 0 {
            (None, None)
        } else if p.total() > n.total() {
            (Some(Expected::Unmet), Some(p.total()))
        } else {
            (Some(Expected::Met), Some(n.total()))
        };
        let (kappa_low, kappa_high) = match bootstrap_kappa(c, BOOTSTRAP, SEED) {
            Some((l, h)) => (Some(round(l)), Some(round(h))),
            None => (None, None),
        };
        Metrics {
            items,
            confusion: c,
            tpr: Rate::new(p.unmet, p.total()),
            tnr: Rate::new(n.met, n.total()),
            precision: ratio(p.unmet, p.unmet + n.unmet),
            abstention: Rate::new(p.unknown + n.unknown, items),
            accuracy: ratio(right, items),
            majority_baseline: majority.and_then(|m| ratio(m, items)),
            majority_class,
            kappa: kappa(c).map(round),
            kappa_low,
            kappa_high,
            mean_flip_rate: None,
        }
    }
}

/// Cohen's κ = (pₒ − pₑ) / (1 − pₑ), over expected {unmet, met} × got {unmet, met, unknown}.
pub fn kappa(c: Confusion) -> Option<f64> {
    let total = f64::from(c.total());
    if total == 0.0 {
        return None;
    }
    let (p, n) = (c.expected_unmet, c.expected_met);
    let observed = f64::from(p.unmet + n.met) / total;
    let exp_unmet = f64::from(p.total()) / total;
    let exp_met = f64::from(n.total()) / total;
    let got_unmet = f64::from(p.unmet + n.unmet) / total;
    let got_met = f64::from(p.met + n.met) / total;
    let chance = exp_unmet * got_unmet + exp_met * got_met;
    if (1.0 - chance).abs() < 1e-12 {
        return None;
    }
    Some((observed - chance) / (1.0 - chance))
}

/// The 2.5th and 97.5th percentiles of κ over `rounds` resamples of the items (with
/// replacement), from a fixed seed. `None` when κ is undefined in too many resamples to
/// say (more than half) or there is nothing to resample.
pub fn bootstrap_kappa(c: Confusion, rounds: u32, seed: u64) -> Option<(f64, f64)> {
    let cells = c.cells();
    let n = c.total();
    if n == 0 || rounds == 0 {
        return None;
    }
    kappa(c)?;
    // Cumulative cell bounds: a uniform draw below n picks a cell as resampling an item does.
    let mut bounds = [0u32; 6];
    let mut sum = 0;
    for (b, cell) in bounds.iter_mut().zip(cells) {
        sum += cell;
        *b = sum;
    }
    let mut rng = SplitMix64(seed);
    let mut values = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        let mut drawn = [0u32; 6];
        for _ in 0..n {
            let r = rng.below(n);
            let cell = bounds.iter().position(|b| r < *b).unwrap_or(5);
            drawn[cell] += 1;
        }
        if let Some(k) = kappa(Confusion::from_cells(drawn)) {
            values.push(k);
        }
    }
    if values.len() * 2 < rounds as usize {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Some((at(0.025), at(0.975)))
}

/// The 95% Wilson score interval of `count` of `of`.
pub fn wilson(count: u32, of: u32) -> Option<(f64, f64)> {
    if of == 0 {
        return None;
    }
    let z = 1.959_963_984_540_054_f64;
    let n = f64::from(of);
    let p = f64::from(count) / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

fn ratio(a: u32, b: u32) -> Option<f64> {
    (b > 0).then(|| round(f64::from(a) / f64::from(b)))
}

/// Six decimals: enough for any count a suite has, and short in eval.json.
pub fn round(x: f64) -> f64 {
    let r = (x * 1e6).round() / 1e6;
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// A small, fixed pseudo-random generator (SplitMix64): the bootstrap must draw the same
/// numbers on every machine and in every version.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift.
    fn below(&mut self, n: u32) -> u32 {
        (((self.next() >> 32) * u64::from(n)) >> 32) as u32
    }
}

/// The exact two-sided McNemar test on `b` and `c` discordant pairs: twice the binomial
/// (n = b + c, p = ½) tail at min(b, c), capped at 1.
pub fn mcnemar_exact(b: u32, c: u32) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // Σ_{i ≤ k} C(n, i) / 2ⁿ, in logs so large n does not overflow.
    let ln_half_n = f64::from(n) * 0.5f64.ln();
    let mut ln_choose = 0.0; // ln C(n, 0)
    let mut tail = 0.0;
    for i in 0..=k {
        if i > 0 {
            ln_choose += (f64::from(n - i + 1)).ln() - f64::from(i).ln();
        }
        tail += (ln_choose + ln_half_n).exp();
    }
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confusion(p: [u32; 3], n: [u32; 3]) -> Confusion {
        Confusion::from_cells([p[0], p[1], p[2], n[0], n[1], n[2]])
    }

    #[test]
    fn hand_counted_matrix_gives_hand_computed_rates() {
        // 10 defects: 6 caught, 3 missed, 1 abstained; 10 clean: 8 passed, 1 flagged, 1 abstained.
        let m = Metrics::of(confusion([6, 3, 1], [1, 8, 1]));
        assert_eq!(m.items, 20);
        assert_eq!((m.tpr.count, m.tpr.of, m.tpr.value), (6, 10, Some(0.6)));
        assert_eq!((m.tnr.count, m.tnr.of, m.tnr.value), (8, 10, Some(0.8)));
        assert_eq!(m.precision, Some(round(6.0 / 7.0)));
        assert_eq!(m.abstention.value, Some(0.1));
        assert_eq!(m.accuracy, Some(0.7));
        assert_eq!(m.majority_baseline, Some(0.5));
        // pₒ = 14/20; pₑ = .5·7/20 + .5·11/20 = .45; κ = (.7 − .45)/.55.
        assert_eq!(m.kappa, Some(round(0.25 / 0.55)));
        let (l, h) = (m.kappa_low.unwrap(), m.kappa_high.unwrap());
        assert!(l < m.kappa.unwrap() && m.kappa.unwrap() < h, "{l} {h}");
    }

    #[test]
    fn perfect_opposite_and_constant_judges() {
        assert_eq!(kappa(confusion([5, 0, 0], [0, 5, 0])), Some(1.0));
        assert_eq!(kappa(confusion([0, 5, 0], [5, 0, 0])), Some(-1.0));
        // Always met: catches nothing, passes everything, agrees no better than chance.
        let m = Metrics::of(confusion([0, 4, 0], [0, 6, 0]));
        assert_eq!(
            (m.tpr.value, m.tnr.value, m.kappa),
            (Some(0.0), Some(1.0), Some(0.0))
        );
        assert_eq!(m.precision, None);
        assert_eq!(m.majority_class, Some(Expected::Met));
        // One class on both sides: κ is undefined, not 1.
        assert_eq!(kappa(confusion([0, 0, 0], [0, 3, 0])), None);
    }

    #[test]
    fn wilson_matches_the_textbook_values() {
        // 8 of 10: [0.4902, 0.9433] (Wilson 1927; Newcombe 1998, table I).
        let (l, h) = wilson(8, 10).unwrap();
        assert!(
            (l - 0.4902).abs() < 1e-4 && (h - 0.9433).abs() < 1e-4,
            "{l} {h}"
        );
        let (l, h) = wilson(0, 10).unwrap();
        assert!(l == 0.0 && (h - 0.2775).abs() < 1e-4, "{h}");
        assert_eq!(wilson(0, 0), None);
    }

    #[test]
    fn the_bootstrap_is_the_same_every_time() {
        let c = confusion([6, 3, 1], [1, 8, 1]);
        assert_eq!(bootstrap_kappa(c, 200, 7), bootstrap_kappa(c, 200, 7));
        assert_ne!(bootstrap_kappa(c, 200, 7), bootstrap_kappa(c, 200, 8));
    }

    #[test]
    fn mcnemar_is_the_exact_binomial_tail() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // b = 5, c = 0: 2 · (1/32).
        assert!((mcnemar_exact(5, 0) - 0.0625).abs() < 1e-12);
        // b = 7, c = 2: 2 · (1 + 9 + 36)/512.
        assert!((mcnemar_exact(2, 7) - 92.0 / 512.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact(3, 3), 1.0);
    }

    #[test]
    fn outcomes() {
        assert_eq!(outcome(Expected::Unmet, Got::Unmet), Outcome::Right);
        assert_eq!(outcome(Expected::Met, Got::Unmet), Outcome::Wrong);
        assert_eq!(outcome(Expected::Met, Got::Unknown), Outcome::Abstained);
        assert_eq!(outcome(Expected::Any, Got::Met), Outcome::Unscored);
    }
}
