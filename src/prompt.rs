//! Prompt templates: minijinja over `prompts/*.j2`, with strict undefined so a typo in a
//! template is an error at preflight, not an empty string sent to a model. The shipped
//! templates are compiled in; `--prompts DIR` overrides any of them by file name.

use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use sha2::{Digest, Sha256};

/// The templates hatrack renders, with the shipped text of each.
pub const TEMPLATES: [(&str, &str); 6] = [
    ("system.j2", include_str!("../prompts/system.j2")),
    ("hat.j2", include_str!("../prompts/hat.j2")),
    ("judge.j2", include_str!("../prompts/judge.j2")),
    ("review.j2", include_str!("../prompts/review.j2")),
    ("signal.j2", include_str!("../prompts/signal.j2")),
    ("dossier.j2", include_str!("../prompts/dossier.j2")),
];

/// The findings block judging steps are shown when a run has checks. It is not one of
/// [`TEMPLATES`]: rendered only for runs with checks, and folded into the digest only for
/// them ([`Prompts::digest_for`]), so a run without checks sends and records what it did
/// before checks existed.
pub const FINDINGS: (&str, &str) = ("findings.j2", include_str!("../prompts/findings.j2"));

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{}: {message}", .path.display())]
    Read { path: PathBuf, message: String },
    /// `detail` carries minijinja's snippet (template name, line, the offending expression).
    #[error("prompt template {template}: {detail}")]
    Render { template: String, detail: String },
}

/// The effective templates and their digest.
#[derive(Clone)]
pub struct Prompts {
    env: Environment<'static>,
    digest: String,
    /// Where each template came from (`shipped` or a path), for `hatrack list`/logs.
    pub origins: Vec<(String, String)>,
    /// Each template's name and effective text (what a run's snapshot keeps).
    texts: Vec<(String, String)>,
    /// [`Prompts::digest`] with [`FINDINGS`] folded in: a run with checks records it.
    digest_with_findings: String,
    /// The templates that read `step` (or may: they include, import or extend another).
    read_step: Vec<String>,
}

impl Prompts {
    /// The shipped templates, each replaced by `dir/<name>` when that file exists.
    pub fn load(dir: Option<&Path>) -> Result<Prompts, PromptError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        let mut hasher = Sha256::new();
        let mut origins = Vec::new();
        let mut texts = Vec::new();
        for (name, shipped) in TEMPLATES {
            let (source, origin) = effective(dir, name, shipped)?;
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(source.as_bytes());
            hasher.update([0]);
            texts.push((name.to_string(), source.clone()));
            env.add_template_owned(name, source)
                .map_err(|e| render_error(name, &e))?;
            origins.push((name.to_string(), origin));
        }
        let digest = hex::encode(hasher.finalize());
        let (name, shipped) = FINDINGS;
        let (source, origin) = effective(dir, name, shipped)?;
        let mut hasher = Sha256::new();
        for part in [digest.as_str(), name, source.as_str()] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        texts.push((name.to_string(), source.clone()));
        env.add_template_owned(name, source)
            .map_err(|e| render_error(name, &e))?;
        origins.push((name.to_string(), origin));
        let read_step = texts
            .iter()
            .filter(|(name, source)| reads_var(&env, name, source, "step"))
            .map(|(name, _)| name.clone())
            .collect();
        Ok(Prompts {
            env,
            digest,
            origins,
            texts,
            digest_with_findings: hex::encode(hasher.finalize()),
            read_step,
        })
    }

    /// Whether `template` renders differently for each step (it reads `step`, or includes,
    /// imports or extends a template that might): a run reuses what it renders only when not.
    pub fn reads_step(&self, template: &str) -> bool {
        self.read_step.iter().any(|t| t == template)
    }

    /// The digest of the templates a run renders: with the findings block when it has
    /// checks.
    pub fn digest_for(&self, checks: bool) -> &str {
        if checks {
            &self.digest_with_findings
        } else {
            &self.digest
        }
    }

    /// Each template's name and effective text, in [`TEMPLATES`] order.
    pub fn texts(&self) -> &[(String, String)] {
        &self.texts
    }

    /// sha256 over the effective templates (recorded in run.json).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn render(
        &self,
        template: &str,
        context: &serde_json::Value,
    ) -> Result<String, PromptError> {
        let tpl = self
            .env
            .get_template(template)
            .map_err(|e| render_error(template, &e))?;
        let text = tpl
            .render(minijinja::value::Serde(context))
            .map_err(|e| render_error(template, &e))?;
        Ok(text.trim().to_string())
    }
}

/// Whether template `name` (of text `source`) reads the context variable `var`; a template
/// that includes, imports or extends another is counted as reading it.
fn reads_var(env: &Environment<'static>, name: &str, source: &str, var: &str) -> bool {
    let tags = source.split("{%").skip(1).map(|tag| {
        let tag = tag.trim_start_matches(['-', '+']).trim_start();
        tag.split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or("")
    });
    if tags
        .clone()
        .any(|t| matches!(t, "include" | "import" | "extends" | "from"))
    {
        return true;
    }
    env.get_template(name).map_or(true, |t| {
        t.undeclared_variables(true).iter().any(|v| {
            v == var
                || v.strip_prefix(var)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
    })
}

/// A template's text: `dir/<name>` when that file exists, else the shipped one; and where
/// it came from.
fn effective(
    dir: Option<&Path>,
    name: &str,
    shipped: &str,
) -> Result<(String, String), PromptError> {
    match dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
        Some(path) => {
            use crate::safe_fs::{read_bounded_string, Kind, Links};
            let text = read_bounded_string(&path, Kind::TEMPLATE, Links::Follow).map_err(|e| {
                PromptError::Read {
                    path: path.clone(),
                    message: e.why.to_string(),
                }
            })?;
            Ok((text, path.display().to_string()))
        }
        None => Ok((shipped.to_string(), "shipped".to_string())),
    }
}

/// minijinja's own message plus the place, walking the chain (an error inside an include
/// reports the include site first).
fn render_error(template: &str, err: &minijinja::Error) -> PromptError {
    let mut detail = format!("{err:#}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        detail.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    PromptError::Render {
        template: template.to_string(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dossier_that_reads_the_step_or_includes_another_template_is_never_reused() {
        let shipped = Prompts::load(None).unwrap();
        assert!(
            !shipped.reads_step("dossier.j2"),
            "the shipped dossier is the same for every step"
        );
        for (source, reads) in [
            ("{{ stage.name }}", false),
            ("{% if step.kind == 'hat' %}x{% endif %}", true),
            ("{{ step }}", true),
            (
                "{% for s in stage.hats %}{{ s }}{% endfor %}{{ steps_total }}",
                false,
            ),
            ("{%- include 'system.j2' %}", true),
            ("{% import 'hat.j2' as h %}", true),
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("dossier.j2"), source).unwrap();
            let prompts = Prompts::load(Some(dir.path())).unwrap();
            assert_eq!(prompts.reads_step("dossier.j2"), reads, "{source}");
        }
    }

    #[test]
    fn a_missing_variable_is_an_error_naming_the_template() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hat.j2"), "Hello {{ hat.nmae }}").unwrap();
        let prompts = Prompts::load(Some(dir.path())).unwrap();
        let err = prompts
            .render("hat.j2", &serde_json::json!({"hat": {"name": "sre"}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("hat.j2"), "{err}");
        assert!(err.contains("hat.j2:1"), "{err}");
    }

    #[test]
    fn overriding_a_template_changes_the_digest() {
        let shipped = Prompts::load(None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("signal.j2"), "judge").unwrap();
        let custom = Prompts::load(Some(dir.path())).unwrap();
        assert_ne!(shipped.digest(), custom.digest());
        assert_eq!(
            custom.origins[4].1,
            dir.path().join("signal.j2").display().to_string()
        );
    }
}
