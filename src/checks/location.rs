//! Where a finding is, relative to the workspace. Tools write absolute `file://` URIs (ruff
//! does), relative ones against a base (`%SRCROOT%`, a run's `originalUriBaseIds`), or
//! plain paths (JUnit's `file` attribute). Nothing here reads the file a URI names: a path
//! is placed lexically, and one that lies outside the workspace is refused.

use std::path::{Component, Path, PathBuf};

/// The workspace, as given and as the file system resolves it (a tool may have been run
/// from either spelling).
#[derive(Debug, Clone)]
pub struct Root {
    given: PathBuf,
    canonical: Option<PathBuf>,
}

impl Root {
    pub fn new(workspace: &Path) -> Root {
        let given = std::path::absolute(workspace).unwrap_or_else(|_| workspace.to_path_buf());
        Root {
            canonical: workspace.canonicalize().ok(),
            given: normalise(&given).unwrap_or(given),
        }
    }

    /// A path relative to the workspace (`/`-separated, no `.` or `..`), or why it is not
    /// one.
    pub fn relative(&self, path: &Path) -> Result<String, Outside> {
        if path.is_absolute() {
            let abs = normalise(path).ok_or(Outside::Escapes)?;
            let rel = self
                .canonical
                .as_deref()
                .and_then(|c| abs.strip_prefix(c).ok())
                .or_else(|| abs.strip_prefix(&self.given).ok())
                .ok_or(Outside::NotUnder)?;
            return joined(rel);
        }
        let rel = normalise(path).ok_or(Outside::Escapes)?;
        joined(&rel)
    }

    /// A URI of a SARIF `artifactLocation`, resolved against `base` (the URI its
    /// `uriBaseId` names, when the file defines it) and made relative to the workspace.
    pub fn uri(&self, uri: &str, base: Option<&str>) -> Result<String, Outside> {
        if let Some(path) = file_uri_path(uri) {
            return self.relative(&PathBuf::from(path?));
        }
        if has_scheme(uri) {
            return Err(Outside::NotAFile);
        }
        let decoded = percent_decode(uri).ok_or(Outside::BadUri)?;
        match base {
            Some(base) if file_uri_path(base).is_some() => {
                let base = file_uri_path(base).expect("checked")?;
                self.relative(&Path::new(&base).join(decoded.trim_start_matches('/')))
            }
            Some(base) if !has_scheme(base) => {
                let base = percent_decode(base).ok_or(Outside::BadUri)?;
                self.relative(&Path::new(&base).join(decoded.trim_start_matches('/')))
            }
            Some(_) => Err(Outside::NotAFile),
            None => self.relative(Path::new(&decoded)),
        }
    }
}

/// Why a location is not a workspace file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outside {
    /// An absolute path under another directory.
    NotUnder,
    /// A relative path whose `..` climbs out of the workspace.
    Escapes,
    /// Not a `file:` URI (`https://…`).
    NotAFile,
    /// Bad percent-encoding, or not UTF-8.
    BadUri,
    /// The path is the workspace itself, not a file in it.
    Root,
}

impl Outside {
    pub fn describe(self) -> &'static str {
        match self {
            Outside::NotUnder => "lies outside the workspace",
            Outside::Escapes => "climbs out of the workspace with `..`",
            Outside::NotAFile => "is not a file: URI",
            Outside::BadUri => "is not a valid URI",
            Outside::Root => "names the workspace itself, not a file in it",
        }
    }
}

fn joined(rel: &Path) -> Result<String, Outside> {
    let joined = crate::safe_fs::slash_path(rel);
    if joined.is_empty() {
        return Err(Outside::Root);
    }
    Ok(joined)
}

/// `.` and `..` resolved lexically; `None` when `..` climbs above the start (or the root).
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => out.push(c.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return None;
                }
                out.pop();
                depth -= 1;
            }
            Component::Normal(n) => {
                out.push(n);
                depth += 1;
            }
        }
    }
    Some(out)
}

/// The decoded path of a `file:` URI (`file:///a/b`, `file://localhost/a/b`, `file:/a/b`);
/// `None` when `uri` is not one; `Some(Err)` when it is one that cannot be read.
fn file_uri_path(uri: &str) -> Option<Result<String, Outside>> {
    let rest = uri
        .strip_prefix("file:")
        .or_else(|| uri.strip_prefix("FILE:"))?;
    let path = match rest.strip_prefix("//") {
        Some(after) => {
            let slash = after.find('/').unwrap_or(after.len());
            let host = &after[..slash];
            if !host.is_empty() && !host.eq_ignore_ascii_case("localhost") {
                return Some(Err(Outside::NotUnder));
            }
            &after[slash..]
        }
        None => rest,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    if !path.starts_with('/') {
        return Some(Err(Outside::BadUri));
    }
    Some(percent_decode(path).ok_or(Outside::BadUri))
}

/// `scheme:` at the start (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`).
fn has_scheme(uri: &str) -> bool {
    match uri.find(':') {
        Some(at) if at > 1 => {
            let scheme = &uri[..at];
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        _ => false,
    }
}

/// `%XX` decoded; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_uris_become_workspace_paths_and_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("repo");
        std::fs::create_dir_all(&ws).unwrap();
        let root = Root::new(&ws);
        let abs = ws.canonicalize().unwrap();
        let uri = format!("file://{}/dags/my%20etl.py", abs.display());
        assert_eq!(root.uri(&uri, None).unwrap(), "dags/my etl.py");
        assert_eq!(root.uri("dags/etl.py", None).unwrap(), "dags/etl.py");
        assert_eq!(
            root.uri("./dags/../dags/etl.py", None).unwrap(),
            "dags/etl.py"
        );
        let base = format!("file://{}/", abs.display());
        assert_eq!(root.uri("dags/etl.py", Some(&base)).unwrap(), "dags/etl.py");
        assert_eq!(root.uri("file:///etc/passwd", None), Err(Outside::NotUnder));
        assert_eq!(root.uri("../other/x.py", None), Err(Outside::Escapes));
        let climbing = format!("file://{}/../other/x.py", abs.display());
        assert_eq!(root.uri(&climbing, None), Err(Outside::NotUnder));
        assert_eq!(
            root.uri("https://example.com/x.py", None),
            Err(Outside::NotAFile)
        );
        assert_eq!(
            root.uri("file://evil.host/x.py", None),
            Err(Outside::NotUnder)
        );
        assert_eq!(root.uri("dags/%ZZ.py", None), Err(Outside::BadUri));
        assert_eq!(root.uri(".", None), Err(Outside::Root));
    }
}
