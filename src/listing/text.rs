//! The listing for a terminal.

use std::io::Write;

use super::{AgentView, HatView, ListView, RequirementView};
use crate::verdict::Subject;

fn plain(text: &str) -> String {
    text.replace("**", "")
}

fn write_requirements(
    out: &mut dyn Write,
    indent: &str,
    reqs: &[RequirementView],
) -> std::io::Result<()> {
    let width = reqs.iter().map(|r| r.id.len()).max().unwrap_or(0);
    for r in reqs {
        let flag = if r.malformed {
            "  [wording looks garbled in the source]"
        } else {
            ""
        };
        let about = match r.about {
            Some(Subject::Repository) => "  [evidence: repository]",
            Some(Subject::HatOutput) => "  [evidence: hat output]",
            None => "",
        };
        let label = match &r.label {
            Some(l) => format!("  [listed under {l:?}]"),
            None => String::new(),
        };
        writeln!(
            out,
            "{indent}{:<8}  {:<width$}  {}{label}{flag}{about}",
            r.level,
            r.id,
            plain(&r.text)
        )?;
    }
    Ok(())
}

/// The whole listing: stage, hats, agents, criteria, signal, evidence rule, artifacts.
pub fn write_text(v: &ListView, out: &mut dyn Write) -> std::io::Result<()> {
    write_stage(v, out)?;
    write_hats(&v.hats, out)?;
    write_agents(&v.review_agents, out)?;
    if let Some(c) = &v.criteria {
        writeln!(out, "\nCriteria guidance:")?;
        writeln!(out, "  good:")?;
        for g in &c.good {
            writeln!(out, "    - {g}")?;
        }
        writeln!(out, "  bad:")?;
        for b in &c.bad {
            writeln!(out, "    - {b}")?;
        }
    }
    if v.completion_signal.requirements.is_empty() {
        writeln!(
            out,
            "\nCompletion signal: none — the run gates on hat constraints and review checks"
        )?;
    } else {
        writeln!(
            out,
            "\nCompletion signal ({} requirements):",
            v.completion_signal.requirements.len()
        )?;
        write_requirements(out, "  ", &v.completion_signal.requirements)?;
    }
    writeln!(
        out,
        "\nEvidence: a met on a requirement marked [evidence: repository] needs a quote from a repository file (a bound input, or a file read with the tools); one marked [evidence: hat output] — a hat constraint, or text naming a hat or a document a hat writes (plan, runbook, assessment, …) — may rest on a hat's artifact."
    )?;
    for (label, list) in [("Outputs", &v.outputs), ("Discovery", &v.discovery)] {
        if !list.is_empty() {
            writeln!(out, "\n{label}:")?;
            for a in list {
                let req = if a.required { "required" } else { "optional" };
                writeln!(
                    out,
                    "  {}  {} ({}, {}, {req})",
                    a.name, a.location, a.scope, a.format
                )?;
            }
        }
    }
    Ok(())
}

/// The listing's head: the stage, its definition, gate, v8 extras and stage inputs.
fn write_stage(v: &ListView, out: &mut dyn Write) -> std::io::Result<()> {
    let s = &v.stage;
    let studio = s
        .studio
        .as_deref()
        .map(|st| format!(" (studio {st})"))
        .unwrap_or_default();
    writeln!(out, "Stage {}{studio}: {}", s.name, s.description)?;
    writeln!(out, "  definition: {}", s.dir)?;
    let human = if s.needs_human {
        " (a person decides after hatrack reports)"
    } else {
        ""
    };
    writeln!(out, "  gate: {}{human}", s.gates.join(", "))?;
    if let Some(e) = &s.elaboration {
        writeln!(out, "  elaboration: {e}")?;
    }
    if !s.fix_hats.is_empty() {
        writeln!(
            out,
            "  fix hats: {} (not run by hatrack)",
            s.fix_hats.join(", ")
        )?;
    }
    if let Some(i) = &s.interpretation {
        writeln!(out, "  interpretation: {i}")?;
    }
    if !s.studio_fix_hats.is_empty() {
        let names = s.studio_fix_hats.join(", ");
        writeln!(out, "  studio fix hats: {names} (not run by hatrack)")?;
    }
    if !s.studio_agents_not_applied.is_empty() {
        let names = s.studio_agents_not_applied.join(", ");
        writeln!(out, "  studio review agents not applying here: {names}")?;
    }
    for p in &s.phases {
        writeln!(out, "  phase {} ({}; guidance, not run):", p.name, p.file)?;
        writeln!(out, "    {}", plain(&p.body).replace('\n', "\n    "))?;
    }
    if v.inputs.is_empty() {
        writeln!(out, "  stage inputs: none")?;
    } else {
        writeln!(out, "  stage inputs:")?;
        for i in &v.inputs {
            writeln!(
                out,
                "    {} {} from stage {} ({})",
                i.kind, i.name, i.stage, i.source
            )?;
        }
    }
    Ok(())
}

/// The hats in run order: guidance sections, constraints, other keyword sentences.
fn write_hats(hats: &[HatView], out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "\nHats, in order:")?;
    for (n, h) in hats.iter().enumerate() {
        writeln!(out, "{}. {}  ({})", n + 1, h.name, h.file)?;
        for (label, text) in [
            ("Focus", &h.focus),
            ("Produces", &h.produces),
            ("Reads", &h.reads),
            ("Responsibilities", &h.responsibilities),
            ("Process", &h.process),
        ] {
            if let Some(t) = text {
                writeln!(out, "   {label}: {}", plain(t).replace('\n', "\n     "))?;
            }
        }
        writeln!(out, "   Constraints ({}):", h.constraints.len())?;
        write_requirements(out, "     ", &h.constraints)?;
        if !h.other_requirements.is_empty() {
            writeln!(out, "   Other keyword sentences (context, not judged):")?;
            write_requirements(out, "     ", &h.other_requirements)?;
        }
    }
    Ok(())
}

/// The review agents: origin, mandate, checks and failure-mode guidance.
fn write_agents(agents: &[AgentView], out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "\nReview agents:")?;
    for a in agents {
        let origin = match (&a.from_stage, &a.studio) {
            (Some(st), _) => format!("included from stage {st}"),
            (None, Some(studio)) => format!("studio-level, from studio {studio}"),
            (None, None) => "own".into(),
        };
        writeln!(out, "- {} ({origin})  ({})", a.name, a.file)?;
        if !a.applies_to.is_empty() {
            writeln!(out, "   Applies to: {}", a.applies_to.join(", "))?;
        }
        if let Some(i) = &a.interpretation {
            writeln!(out, "   Interpretation: {i}")?;
        }
        writeln!(out, "   Mandate: {}", plain(&a.mandate))?;
        writeln!(out, "   Checks ({}):", a.checks.len())?;
        write_requirements(out, "     ", &a.checks)?;
        if !a.failure_modes.is_empty() {
            writeln!(
                out,
                "   Common failure modes (guidance for the judge, not checks):"
            )?;
            for f in &a.failure_modes {
                writeln!(out, "     - {}", plain(f))?;
            }
        }
    }
    Ok(())
}
