//! The batch manifest init writes beside a repository's pipelines: one workspace per line,
//! relative to the file, as `hatrack run --manifest` reads it.

/// Its name, at the repository's root.
pub const FILE: &str = "hatrack-workspaces.txt";

/// The manifest's text.
pub fn text(workspaces: &[String]) -> String {
    let mut t = format!(
        "# Written by `hatrack init`: this repository holds {} pipelines, each reviewed as a\n\
         # workspace of its own (its hatrack.toml binds its files). One workspace per line,\n\
         # relative to this file. Review them all with:\n\
         #   hatrack run --manifest {FILE}\n",
        workspaces.len()
    );
    for w in workspaces {
        t.push_str(w);
        t.push('\n');
    }
    t
}

/// The note at the top of each workspace's hatrack.toml.
pub fn note(dir: &str, count: usize) -> String {
    let up = "../".repeat(dir.split('/').count());
    format!(
        "This repository holds {count} pipelines; this file binds the one in {dir}, reviewed \
         as a workspace of its own ({up}{FILE} lists them all, for `hatrack run --manifest`). \
         A workspace reads only the files under it: what the repository shares above it \
         (a README, infrastructure, CI) is named in the TODO lines where nothing here fits."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_lists_one_workspace_per_line() {
        let t = text(&["pipelines/a".into(), "pipelines/b".into()]);
        let listed: Vec<&str> = t.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(listed, ["pipelines/a", "pipelines/b"]);
        assert!(note("pipelines/a", 2).contains("../../hatrack-workspaces.txt"));
    }
}
