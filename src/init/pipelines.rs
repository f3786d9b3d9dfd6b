//! One pipeline or several: a repository with several dbt projects or DAG folders is split
//! into one workspace per pipeline when each lives in a directory of its own (a workspace
//! reads only the files under it); otherwise it stays one workspace and the file asks which.

use super::layout::{Anchor, Layout};

/// How the repository is reviewed.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// One workspace, the repository itself; `question` when it seems to hold several
    /// pipelines that could not be told apart.
    One { question: Option<String> },
    /// One workspace per directory (relative to the repository), listed in a manifest.
    Split { workspaces: Vec<String> },
}

/// Decides from the layout of the whole repository.
pub fn plan(layout: &Layout) -> Plan {
    let anchors = layout.anchors();
    let count = |what: &str| anchors.iter().filter(|a| a.what == what).count();
    if count("dbt project") < 2 && count("DAG folder") < 2 {
        return Plan::One { question: None };
    }
    match split(&anchors) {
        Some(workspaces) => Plan::Split { workspaces },
        None => Plan::One {
            question: Some(question(&anchors)),
        },
    }
}

/// The pipelines' directories: the children of the anchors' common directory, one per
/// group of anchors — when no anchor lives in the common directory itself.
fn split(anchors: &[Anchor]) -> Option<Vec<String>> {
    let homes: Vec<Vec<&str>> = anchors
        .iter()
        .map(|a| a.home.split('/').filter(|c| !c.is_empty()).collect())
        .collect();
    let first = homes.first()?;
    let common = (0..first.len())
        .take_while(|&i| homes.iter().all(|h| h.get(i) == first.get(i)))
        .count();
    if homes.iter().any(|h| h.len() == common) {
        return None;
    }
    let mut dirs: Vec<String> = homes.iter().map(|h| h[..=common].join("/")).collect();
    dirs.sort();
    dirs.dedup();
    (dirs.len() > 1).then_some(dirs)
}

fn question(anchors: &[Anchor]) -> String {
    let list: Vec<String> = anchors
        .iter()
        .map(|a| {
            let dir = if a.dir.is_empty() {
                "."
            } else {
                a.dir.as_str()
            };
            format!("{} {dir}", a.what)
        })
        .collect();
    format!(
        "QUESTION: this repository seems to hold several pipelines ({}), and they do not each \
         live in a directory of their own, so they are bound together below as one review. \
         Is that what you want? To review each on its own, give each pipeline a directory, \
         run `hatrack init DIR` in each, and list those directories (one per line) in a file \
         for `hatrack run --manifest FILE`.",
        list.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(what: &'static str, dir: &str, home: &str) -> Anchor {
        Anchor {
            what,
            dir: dir.into(),
            home: home.into(),
        }
    }

    #[test]
    fn pipelines_in_directories_of_their_own_are_split() {
        let a = [
            anchor(
                "dbt project",
                "pipelines/orders/dbt",
                "pipelines/orders/dbt",
            ),
            anchor("DAG folder", "pipelines/orders/dags", "pipelines/orders"),
            anchor("dbt project", "pipelines/payments", "pipelines/payments"),
        ];
        assert_eq!(
            split(&a),
            Some(vec!["pipelines/orders".into(), "pipelines/payments".into()])
        );
    }

    #[test]
    fn a_shared_dag_folder_at_the_root_keeps_one_workspace() {
        let a = [
            anchor("dbt project", "dbt/finance", "dbt/finance"),
            anchor("dbt project", "dbt/marketing", "dbt/marketing"),
            anchor("DAG folder", "dags", ""),
        ];
        assert_eq!(split(&a), None);
        assert!(question(&a).contains("dbt project dbt/finance; dbt project dbt/marketing"));
    }
}
