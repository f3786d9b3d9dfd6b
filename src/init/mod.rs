//! `hatrack init`: looks at a repository and writes a commented `hatrack.toml` that binds
//! every **Reads** item of the stage to the files that fit, reading the ecosystems' own
//! files to find them — dbt's `dbt_project.yml` (`detect`: [`dbt`]), Airflow's
//! `airflow.cfg`, `.airflowignore` and Astronomer projects ([`airflow`]), Dagster and
//! Prefect ([`orchestrators`]), Kubernetes, Helm, Kustomize, Terraform, compose files and CI
//! ([`infra`]), intent, runbooks and on-call documents ([`docs`]).
//!
//! A repository with several pipelines, each in a directory of its own, gets one workspace
//! per pipeline and a batch manifest listing them ([`pipelines`], [`manifest`]); several
//! that cannot be told apart stay one workspace with a question in the file.
//!
//! The choice is deterministic (fixed rules, files in lexicographic order); an item nothing
//! fits is written with a `# TODO:` line naming the closest candidates and a placeholder the
//! binder recognises ([`render`]). Nothing is ever overwritten without `--force`.

pub mod airflow;
pub mod choose;
pub mod dbt;
pub mod docs;
pub mod infra;
pub mod layout;
pub mod manifest;
pub mod orchestrators;
pub mod pipelines;
pub mod render;
pub mod scan;

use std::path::{Path, PathBuf};

use crate::config::{ConfigFile, CONFIG_FILE};
use crate::definition::Stage;
use crate::safe_fs::SafeFsError;

use layout::Layout;
use pipelines::Plan;
use render::{Context, Entry};
use scan::Repo;

/// Why init wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{path}: {message}")]
    Scan { path: String, message: String },
    #[error("{} already exists{}; hatrack init never overwrites it — pass --force to replace it with a new file, or edit it by hand", .path.display(), if *.link { " (a symbolic link)" } else { "" })]
    Exists { path: PathBuf, link: bool },
    #[error("{} appeared while hatrack init was writing it; it was left alone — pass --force to replace it", .path.display())]
    Appeared { path: PathBuf },
    /// What init wrote does not load: a bug, caught before the file is left behind.
    #[error("{} as written would not load ({message}); nothing was written", .path.display())]
    Unloadable { path: PathBuf, message: String },
    #[error(transparent)]
    Write(SafeFsError),
}

/// The stage the files name.
#[derive(Debug, Clone)]
pub enum StageRef {
    /// The built-in default, named in a comment only.
    Default(String),
    /// Another built-in stage, written as it is spelled.
    Embedded(String),
    /// A stage on disk, written relative to each workspace when it lies next to it.
    Dir(PathBuf),
}

/// What `hatrack init` was asked.
pub struct Request<'a> {
    pub repo: &'a Path,
    pub stage: &'a Stage,
    pub stage_ref: StageRef,
    pub force: bool,
}

/// One `hatrack.toml` written.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    pub entries: Vec<Entry>,
}

/// Everything written.
#[derive(Debug, Clone)]
pub struct Summary {
    pub configs: Vec<Written>,
    /// The batch manifest, when the repository was split into several workspaces.
    pub manifest: Option<PathBuf>,
    /// The question the file asks, when several pipelines stay one workspace.
    pub question: Option<String>,
}

/// A file to write: relative to the repository.
struct Planned {
    rel: String,
    text: String,
    entries: Vec<Entry>,
}

/// Looks at the repository and writes its `hatrack.toml` file(s) (and manifest).
pub fn init(req: &Request) -> Result<Summary, InitError> {
    let repo = Repo::scan(req.repo)?;
    let layout = Layout::detect(&repo);
    let (planned, question, manifest) = match pipelines::plan(&layout) {
        Plan::One { question } => {
            let notes = question.iter().cloned().collect();
            let one = workspace(req, &repo, &layout, "", None, notes);
            (vec![one], question, None)
        }
        Plan::Split { workspaces } => {
            let mut planned: Vec<Planned> = workspaces
                .iter()
                .map(|dir| {
                    let sub = repo.sub(dir);
                    let notes = vec![manifest::note(dir, workspaces.len())];
                    workspace(req, &sub, &Layout::detect(&sub), dir, Some(&repo), notes)
                })
                .collect();
            let list = Planned {
                rel: manifest::FILE.to_string(),
                text: manifest::text(&workspaces),
                entries: Vec::new(),
            };
            planned.push(list);
            (planned, None, Some(repo.root.join(manifest::FILE)))
        }
    };
    let root = &repo.root;
    if !req.force {
        for p in &planned {
            refuse_existing(&root.join(&p.rel))?;
        }
    }
    for p in planned.iter().filter(|p| p.rel.ends_with(CONFIG_FILE)) {
        let path = root.join(&p.rel);
        ConfigFile::parse(&p.text, &path).map_err(|e| InitError::Unloadable {
            path: path.clone(),
            message: e.to_string(),
        })?;
    }
    let mut configs = Vec::new();
    for p in planned {
        write(root, &p.rel, &p.text, req.force)?;
        if p.rel.ends_with(CONFIG_FILE) {
            configs.push(Written {
                path: root.join(&p.rel),
                entries: p.entries,
            });
        }
    }
    Ok(Summary {
        configs,
        manifest,
        question,
    })
}

/// One workspace's file: `dir` inside the repository (`""` for the repository itself),
/// `whole` the repository when the workspace is a part of it.
fn workspace(
    req: &Request,
    repo: &Repo,
    layout: &Layout,
    dir: &str,
    whole: Option<&Repo>,
    notes: Vec<String>,
) -> Planned {
    let (entries, from_hats) = render::entries(req.stage, layout, repo, whole.map(|w| (w, dir)));
    let (stage_spelling, stage_line) = stage_line(&req.stage_ref, &repo.root);
    let cx = Context {
        stage_spelling,
        stage_line,
        notes,
    };
    Planned {
        rel: scan::join(dir, CONFIG_FILE),
        text: render::render(req.stage, &entries, &from_hats, &cx),
        entries,
    }
}

/// How the file names the stage: its spelling, and the `[stage]` line if any.
fn stage_line(stage: &StageRef, workspace: &Path) -> (String, Option<String>) {
    match stage {
        StageRef::Default(s) => (s.clone(), None),
        StageRef::Embedded(s) => (s.clone(), Some(format!("path = {}", render::toml_str(s)))),
        StageRef::Dir(dir) => {
            let rel = relative_path(dir, workspace);
            (
                rel.clone(),
                Some(format!("path = {}", render::toml_str(&rel))),
            )
        }
    }
}

/// The stage directory as `[stage] path` spells it: relative to the workspace when it lies
/// inside or next to it (`../hatrack/hats/deployment`), else absolute.
fn relative_path(stage_dir: &Path, workspace: &Path) -> String {
    let (Ok(stage), Ok(ws)) = (stage_dir.canonicalize(), workspace.canonicalize()) else {
        return stage_dir.display().to_string();
    };
    match ws.parent() {
        Some(parent) if parent.parent().is_some() && stage.starts_with(parent) => {
            crate::run::rundir::relative_to(&stage, &ws)
        }
        _ => stage.display().to_string(),
    }
}

/// Whatever is at the name counts, a link (even a dangling one) included: never followed.
fn refuse_existing(path: &Path) -> Result<(), InitError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Err(InitError::Exists {
            path: path.to_path_buf(),
            link: meta.file_type().is_symlink(),
        }),
        Err(_) => Ok(()),
    }
}

/// Through the confined writer: a temporary file put in place whole. With --force a link at
/// the name is replaced by the new file, never written through; without it, a file that
/// appeared since the check is left alone.
fn write(root: &Path, rel: &str, text: &str, force: bool) -> Result<(), InitError> {
    use crate::safe_fs::{write_file, write_new_file};
    let written = if force {
        write_file(root, rel, text.as_bytes(), true)
    } else {
        write_new_file(root, rel, text.as_bytes())
    };
    match written {
        Ok(_) => Ok(()),
        Err(SafeFsError::Io { path, source })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            Err(InitError::Appeared { path })
        }
        Err(e) => Err(InitError::Write(e)),
    }
}
