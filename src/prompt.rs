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
            let (source, origin) = match dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).map_err(|e| PromptError::Read {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                    (text, path.display().to_string())
                }
                None => (shipped.to_string(), "shipped".to_string()),
            };
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(source.as_bytes());
            hasher.update([0]);
            texts.push((name.to_string(), source.clone()));
            env.add_template_owned(name, source)
                .map_err(|e| render_error(name, &e))?;
            origins.push((name.to_string(), origin));
        }
        Ok(Prompts {
            env,
            digest: hex::encode(hasher.finalize()),
            origins,
            texts,
        })
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
