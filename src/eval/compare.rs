//! Two evals over the same labelled items, item by item: where one is right and the other
//! is not, the exact McNemar test on those discordant pairs, and the paired difference of
//! TPR and TNR (B − A). Pure: two eval.json in, one comparison out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::labels::Expected;
use super::score::{self, Got, Outcome};
use super::EvalReport;

pub const SCHEMA_VERSION: u32 = 1;
pub const FILES: [&str; 3] = ["compare.json", "compare.md", "compare.html"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub schema_version: u32,
    pub a: String,
    pub b: String,
    /// Items labelled met or unmet in both.
    pub items: u32,
    pub a_right: u32,
    pub b_right: u32,
    /// Right in A, not in B.
    pub only_a_right: u32,
    /// Right in B, not in A.
    pub only_b_right: u32,
    /// Exact two-sided McNemar p-value on the discordant pairs (binomial, p = ½).
    pub mcnemar_p: f64,
    /// Defects caught: B − A, paired.
    pub tpr: PairedDifference,
    /// Clean items passed: B − A, paired.
    pub tnr: PairedDifference,
    /// Every item where one is right and the other is not.
    pub discordant: Vec<Discordant>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedDifference {
    pub of: u32,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// B − A.
    pub difference: Option<f64>,
    /// 95% interval of the paired difference (Wald, with the paired variance).
    pub low: Option<f64>,
    pub high: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discordant {
    pub case: String,
    pub id: String,
    pub expected: Expected,
    pub a: Got,
    pub b: Got,
    /// `a` or `b`: which one is right.
    pub right: String,
}

/// One scored item: (case, id) → (expected, got).
fn items(r: &EvalReport) -> BTreeMap<(String, String), (Expected, Got)> {
    r.cases
        .iter()
        .flat_map(|c| {
            c.items
                .iter()
                .filter(|i| i.expected != Expected::Any)
                .map(move |i| ((c.name.clone(), i.id.clone()), (i.expected, i.got)))
        })
        .collect()
}

/// Compares `a` with `b`, or says how their labelled items differ.
pub fn compare(a: &EvalReport, b: &EvalReport, names: (&str, &str)) -> Result<Comparison, String> {
    let (ia, ib) = (items(a), items(b));
    let mut differences = Vec::new();
    for (key, (ea, _)) in &ia {
        match ib.get(key) {
            None => differences.push(format!("{}: {} is labelled in A only", key.0, key.1)),
            Some((eb, _)) if eb != ea => differences.push(format!(
                "{}: {} is labelled {} in A, {} in B",
                key.0,
                key.1,
                ea.as_str(),
                eb.as_str()
            )),
            _ => {}
        }
    }
    for key in ib.keys().filter(|k| !ia.contains_key(*k)) {
        differences.push(format!("{}: {} is labelled in B only", key.0, key.1));
    }
    if !differences.is_empty() {
        let more = differences.len().saturating_sub(10);
        differences.truncate(10);
        return Err(format!(
            "the two evals are not over the same labelled items:\n  {}{}",
            differences.join("\n  "),
            if more > 0 {
                format!("\n  … and {more} more")
            } else {
                String::new()
            }
        ));
    }
    let right = |e: Expected, g: Got| score::outcome(e, g) == Outcome::Right;
    let mut discordant = Vec::new();
    let (mut a_right, mut b_right) = (0, 0);
    for (key, (expected, got_a)) in &ia {
        let got_b = ib[key].1;
        let (ra, rb) = (right(*expected, *got_a), right(*expected, got_b));
        a_right += u32::from(ra);
        b_right += u32::from(rb);
        if ra != rb {
            discordant.push(Discordant {
                case: key.0.clone(),
                id: key.1.clone(),
                expected: *expected,
                a: *got_a,
                b: got_b,
                right: if ra { "a" } else { "b" }.to_string(),
            });
        }
    }
    let only_a = discordant.iter().filter(|d| d.right == "a").count() as u32;
    let only_b = discordant.len() as u32 - only_a;
    let paired = |class: Expected| paired(&ia, &ib, class);
    Ok(Comparison {
        schema_version: SCHEMA_VERSION,
        a: names.0.to_string(),
        b: names.1.to_string(),
        items: ia.len() as u32,
        a_right,
        b_right,
        only_a_right: only_a,
        only_b_right: only_b,
        mcnemar_p: score::mcnemar_exact(only_a, only_b),
        tpr: paired(Expected::Unmet),
        tnr: paired(Expected::Met),
        discordant,
    })
}

type Items = BTreeMap<(String, String), (Expected, Got)>;

/// The paired difference of the share right among items expected `class`.
fn paired(ia: &Items, ib: &Items, class: Expected) -> PairedDifference {
    let right = |g: Got| score::outcome(class, g) == Outcome::Right;
    let (mut n, mut a, mut b, mut only_a, mut only_b) = (0u32, 0u32, 0u32, 0u32, 0u32);
    for (key, (e, ga)) in ia {
        if *e != class {
            continue;
        }
        let (ra, rb) = (right(*ga), right(ib[key].1));
        n += 1;
        a += u32::from(ra);
        b += u32::from(rb);
        only_a += u32::from(ra && !rb);
        only_b += u32::from(rb && !ra);
    }
    if n == 0 {
        return PairedDifference {
            of: 0,
            a: None,
            b: None,
            difference: None,
            low: None,
            high: None,
        };
    }
    let nf = f64::from(n);
    let d = (f64::from(only_b) - f64::from(only_a)) / nf;
    let var = (f64::from(only_a + only_b) - nf * d * d) / (nf * nf);
    let half = 1.959_963_984_540_054 * var.max(0.0).sqrt();
    PairedDifference {
        of: n,
        a: Some(score::round(f64::from(a) / nf)),
        b: Some(score::round(f64::from(b) / nf)),
        difference: Some(score::round(d)),
        low: Some(score::round((d - half).max(-1.0))),
        high: Some(score::round((d + half).min(1.0))),
    }
}

fn diff_text(p: &PairedDifference) -> String {
    match (p.a, p.b, p.difference, p.low, p.high) {
        (Some(a), Some(b), Some(d), Some(l), Some(h)) => {
            format!(
                "{a:.2} → {b:.2}: {d:+.2} [{l:+.2}, {h:+.2}] over {} items",
                p.of
            )
        }
        _ => "– (no such item)".to_string(),
    }
}

pub fn markdown(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Eval comparison: A = {}, B = {}\n", c.a, c.b);
    let _ = writeln!(
        out,
        "{} labelled item(s): A right on {}, B right on {}. Discordant: {} right only in A, {} right only in B; exact McNemar p = {:.4}.\n",
        c.items, c.a_right, c.b_right, c.only_a_right, c.only_b_right, c.mcnemar_p
    );
    let _ = writeln!(out, "- TPR (defects caught), B − A: {}", diff_text(&c.tpr));
    let _ = writeln!(out, "- TNR (clean passed), B − A: {}\n", diff_text(&c.tnr));
    if !c.discordant.is_empty() {
        out.push_str(
            "| case | requirement | expected | A | B | right in |\n|---|---|---|---|---|---|\n",
        );
        for d in &c.discordant {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | {} | {} |",
                d.case,
                d.id,
                d.expected.as_str(),
                d.a.as_str(),
                d.b.as_str(),
                d.right.to_uppercase()
            );
        }
    }
    out
}

pub fn html(c: &Comparison) -> String {
    let mut out = String::from("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>hatrack eval compare</title><style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .5em}</style></head><body>\n");
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let _ = writeln!(
        out,
        "<h1>Eval comparison: A = {}, B = {}</h1>",
        esc(&c.a),
        esc(&c.b)
    );
    let _ = writeln!(
        out,
        "<p>{} labelled items: A right on {}, B right on {}; right only in A: {}, only in B: {}; exact McNemar p = {:.4}.</p>\n<p>TPR, B − A: {}<br>TNR, B − A: {}</p>",
        c.items, c.a_right, c.b_right, c.only_a_right, c.only_b_right, c.mcnemar_p,
        esc(&diff_text(&c.tpr)), esc(&diff_text(&c.tnr))
    );
    out.push_str("<table><tr><th>case</th><th>requirement</th><th>expected</th><th>A</th><th>B</th><th>right in</th></tr>\n");
    for d in &c.discordant {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&d.case),
            esc(&d.id),
            d.expected.as_str(),
            d.a.as_str(),
            d.b.as_str(),
            d.right.to_uppercase()
        );
    }
    out.push_str("</table></body></html>\n");
    out
}
