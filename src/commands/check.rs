use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::CheckArgs;
use crate::definition::{load_tree, Level, LoadedTree, Severity, Stage};
use crate::Error;

/// What `hatrack check` counts, so a user sees at a glance that everything was found.
#[derive(Debug, Default)]
struct Counts {
    studios: usize,
    stages: usize,
    hats: usize,
    own_agents: usize,
    included_agents: usize,
    outputs: usize,
    discovery: usize,
    constraints: BTreeMap<Level, usize>,
    other_hat_requirements: usize,
    checks: BTreeMap<Level, usize>,
    signal: BTreeMap<Level, usize>,
    /// Stages with no completion-signal requirement (the v8 layout).
    without_signal: usize,
    /// Studio-level review agents (v8), each counted once however many stages it reviews.
    studio_agents: std::collections::BTreeSet<PathBuf>,
    /// Studio-level fix hats (v8): shown, never run.
    studio_fix_hats: usize,
    /// `phases/*.md` files: shown, never run.
    phases: usize,
}

impl Counts {
    fn of(tree: &LoadedTree) -> Counts {
        let mut c = Counts {
            studios: tree.studios.len(),
            ..Counts::default()
        };
        let stages = tree
            .studios
            .iter()
            .flat_map(|s| s.stages.iter())
            .chain(tree.stages.iter());
        for stage in stages {
            c.add_stage(stage);
        }
        for studio in &tree.studios {
            c.studio_fix_hats += studio.fix_hats.len();
            for agent in &studio.review_agents {
                c.add_studio_agent(agent);
            }
        }
        c
    }

    fn add_studio_agent(&mut self, agent: &crate::definition::ReviewAgent) {
        if self.studio_agents.insert(agent.file.clone()) {
            for r in &agent.checks {
                *self.checks.entry(r.level).or_default() += 1;
            }
        }
    }

    fn add_stage(&mut self, stage: &Stage) {
        self.stages += 1;
        self.hats += stage.hats.len();
        self.outputs += stage.outputs.len();
        self.discovery += stage.discovery.len();
        for hat in &stage.hats {
            for r in &hat.requirements {
                if r.section == "anti-patterns" {
                    *self.constraints.entry(r.level).or_default() += 1;
                } else {
                    self.other_hat_requirements += 1;
                }
            }
        }
        self.phases += stage.phases.len();
        for agent in &stage.review_agents {
            if agent.studio_level.is_some() {
                self.add_studio_agent(agent);
            } else if agent.origin == crate::definition::AgentOrigin::Own {
                self.own_agents += 1;
                for r in &agent.checks {
                    *self.checks.entry(r.level).or_default() += 1;
                }
            } else {
                self.included_agents += 1;
            }
        }
        for r in &stage.completion_signal {
            *self.signal.entry(r.level).or_default() += 1;
        }
        if stage.completion_signal.is_empty() {
            self.without_signal += 1;
        }
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `909 MUST NOT, 249 MUST, 1 SHOULD` (strongest first); `none` when empty.
fn by_level(map: &BTreeMap<Level, usize>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(level, n)| format!("{n} {level}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn total(map: &BTreeMap<Level, usize>) -> usize {
    map.values().sum()
}

/// `hatrack check [PATH]`: load everything, print counts to `out` and diagnostics to
/// stderr (one `file:line: severity: message` per line). Exit 0 with warnings only, 2 with
/// any error.
pub fn check(args: &CheckArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let path: PathBuf = match &args.path {
        // `embedded:deployment`: one stage built into hatrack.
        Some(p) => crate::definition::stage_path(&p.to_string_lossy()),
        None => PathBuf::from(crate::definition::embedded::ROOT),
    };
    let tree = load_tree(&path);
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    for d in &tree.diagnostics {
        let _ = writeln!(err, "{d}");
    }
    write_summary(&path, &tree, out).map_err(|e| Error::io("writing the check summary", e))?;
    let errors = tree
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let check_errors = stage_checks(&tree, out, &mut err);
    Ok(if errors + check_errors > 0 { 2 } else { 0 })
}

/// Each stage's `checks.toml` (docs/checks.md), checked as a run would: its requirements
/// exist, its probes' patterns compile. Returns how many files have an error.
fn stage_checks(tree: &LoadedTree, out: &mut dyn Write, err: &mut dyn Write) -> usize {
    let stages = tree
        .studios
        .iter()
        .flat_map(|s| s.stages.iter())
        .chain(tree.stages.iter());
    let (mut mappings, mut files, mut errors) = (0usize, 0usize, 0usize);
    for stage in stages {
        let requirements: Vec<String> = crate::run::steps::table(stage)
            .iter()
            .flat_map(|s| s.requirements(stage))
            .map(|r| r.id.clone())
            .collect();
        let label = stage.dir.display().to_string();
        match crate::checks::gather::stage_mappings(&stage.dir, &label, &requirements) {
            Ok(found) if found.is_empty() => {}
            Ok(found) => {
                files += 1;
                mappings += found.len();
            }
            Err(e) => {
                errors += 1;
                let _ = writeln!(err, "{e}");
            }
        }
    }
    if files + errors > 0 {
        let _ = writeln!(
            out,
            "checks: {} in {}{}",
            plural(mappings, "mapping", "mappings"),
            plural(files, "checks.toml", "checks.toml files"),
            if errors > 0 {
                format!(", {} with an error", plural(errors, "file", "files"))
            } else {
                String::new()
            }
        );
    }
    errors
}

fn write_summary(path: &Path, tree: &LoadedTree, out: &mut dyn Write) -> std::io::Result<()> {
    let c = Counts::of(tree);
    let included = if c.included_agents > 0 {
        format!(" (+{} included)", c.included_agents)
    } else {
        String::new()
    };
    writeln!(
        out,
        "checked {}: {}, {}, {}, {}{included}, {}, {} discovery",
        if crate::definition::embedded::contains(path) {
            "the stages built into hatrack".to_string()
        } else {
            path.display().to_string()
        },
        plural(c.studios, "studio", "studios"),
        plural(c.stages, "stage", "stages"),
        plural(c.hats, "hat", "hats"),
        plural(c.own_agents, "review agent", "review agents"),
        plural(c.outputs, "output", "outputs"),
        c.discovery
    )?;
    writeln!(
        out,
        "requirements: {} hat constraints ({}), {} review checks ({}), {} completion-signal requirements ({})",
        total(&c.constraints),
        by_level(&c.constraints),
        total(&c.checks),
        by_level(&c.checks),
        total(&c.signal),
        by_level(&c.signal),
    )?;
    if c.other_hat_requirements > 0 {
        writeln!(
            out,
            "also {} outside hat anti-pattern lists (Focus, Produces, prose…): kept as context, not judged as constraints",
            plural(
                c.other_hat_requirements,
                "keyword sentence",
                "keyword sentences"
            )
        )?;
    }
    if !c.studio_agents.is_empty() || c.studio_fix_hats > 0 {
        writeln!(
            out,
            "studio level: {} (run on the stages they apply to), {} (shown, not run)",
            plural(c.studio_agents.len(), "review agent", "review agents"),
            plural(c.studio_fix_hats, "fix hat", "fix hats"),
        )?;
    }
    if c.phases > 0 {
        writeln!(
            out,
            "{}: guidance, shown, not run",
            plural(c.phases, "phase file", "phase files")
        )?;
    }
    if c.without_signal > 0 {
        writeln!(
            out,
            "{} without a completion signal: gated on hat constraints and review checks",
            plural(c.without_signal, "stage", "stages")
        )?;
    }
    let errors = tree
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = tree.diagnostics.len() - errors;
    writeln!(
        out,
        "{}, {}",
        plural(errors, "error", "errors"),
        plural(warnings, "warning", "warnings")
    )?;
    Ok(())
}
