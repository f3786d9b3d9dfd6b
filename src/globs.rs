//! Path globs as `[inputs]` and probes write them (`models/**/*.sql`, `ops/**`, `intent.md`):
//! globset's syntax and meaning, `*` within one path segment.
//!
//! globset turns every glob into a regex, and building one costs about a tenth of a
//! millisecond: a workspace binds a dozen patterns on every run. The shapes nearly every
//! pattern takes (a plain path, everything under a directory, the files of one extension
//! under a directory) are matched here by comparing text; any other glob goes to globset.
//! Each is parsed by globset first, so a bad glob is the same error either way, and a test
//! holds the fast shapes to globset's answers.

use globset::{GlobBuilder, GlobMatcher};

/// A compiled path glob; cheap to clone.
#[derive(Debug, Clone)]
pub enum PathGlob {
    /// No glob syntax: this exact path.
    Literal(String),
    /// `dir/**`: every path under `dir/` (the text kept ends with `/`).
    Under(String),
    /// `dir/**/*.ext` (`under` ends with `/`) or `**/*.ext` (`under` is empty): every path
    /// under `under` whose name ends with `.ext` (`suffix`, dot included).
    UnderWithSuffix { under: String, suffix: String },
    /// Anything else, as globset matches it.
    Other(GlobMatcher),
}

/// Characters that make a glob more than a plain path.
const GLOB_SYNTAX: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

impl PathGlob {
    /// Parses `pattern` (relative, `/`-separated) as globset does with `*` kept within a
    /// segment. An error is globset's, for the caller to report.
    pub fn new(pattern: &str) -> Result<PathGlob, globset::Error> {
        let glob = GlobBuilder::new(pattern).literal_separator(true).build()?;
        let plain = |s: &str| !s.contains(GLOB_SYNTAX);
        if plain(pattern) {
            return Ok(PathGlob::Literal(pattern.to_string()));
        }
        if let Some(dir) = pattern.strip_suffix("/**") {
            if !dir.is_empty() && plain(dir) {
                return Ok(PathGlob::Under(format!("{dir}/")));
            }
        }
        let (under, name) = match pattern.strip_prefix("**/") {
            Some(name) => ("", name),
            None => match pattern.split_once("/**/") {
                Some((dir, name)) if !dir.is_empty() => (dir, name),
                _ => ("", ""),
            },
        };
        if let Some(ext) = name.strip_prefix("*.") {
            if plain(under) && plain(ext) && !ext.contains('/') {
                let under = if under.is_empty() {
                    String::new()
                } else {
                    format!("{under}/")
                };
                return Ok(PathGlob::UnderWithSuffix {
                    under,
                    suffix: format!(".{ext}"),
                });
            }
        }
        Ok(PathGlob::Other(glob.compile_matcher()))
    }

    /// Whether `path` (relative, `/`-separated) matches.
    pub fn is_match(&self, path: &str) -> bool {
        match self {
            PathGlob::Literal(exact) => path == exact,
            PathGlob::Under(dir) => path.starts_with(dir.as_str()),
            PathGlob::UnderWithSuffix { under, suffix } => {
                path.starts_with(under.as_str()) && path.ends_with(suffix.as_str())
            }
            PathGlob::Other(matcher) => matcher.is_match(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn globset(pattern: &str) -> Option<GlobMatcher> {
        let glob = GlobBuilder::new(pattern).literal_separator(true).build();
        Some(glob.ok()?.compile_matcher())
    }

    #[test]
    fn the_common_shapes_take_the_fast_path() {
        let fast = |p: &str| !matches!(PathGlob::new(p).unwrap(), PathGlob::Other(_));
        for p in [
            "intent.md",
            "ops/**",
            "models/**/*.sql",
            "**/*.py",
            "a.b/**/*.tar.gz",
        ] {
            assert!(fast(p), "{p}");
        }
        for p in [
            "*.md",
            "dags/*.py",
            "{a,b}/**",
            "ops/**/x.yml",
            "a/**/*.{yml,yaml}",
        ] {
            assert!(!fast(p), "{p}");
        }
        assert!(
            PathGlob::new("a/[").is_err(),
            "globset's errors stay errors"
        );
    }

    fn pattern() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "a", "b", "ops", ".", "sql", "/", "**", "*", "?", "/**", "/**/", "**/", "*.", ".sql",
            "[a]", "{a,b}", "-",
        ]);
        prop::collection::vec(piece, 1..6).prop_map(|v| v.concat())
    }

    fn path() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "a", "b", "ops", ".", "sql", "/", "x.sql", "a.b", ".sql", "é", "-",
        ]);
        prop::collection::vec(piece, 1..7).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Every glob matches exactly the paths globset matches, and fails where it fails.
        #[test]
        fn a_glob_matches_what_globset_matches(pattern in pattern(), paths in prop::collection::vec(path(), 8)) {
            let ours = PathGlob::new(&pattern).ok();
            let theirs = globset(&pattern);
            prop_assert_eq!(ours.is_some(), theirs.is_some());
            let (Some(ours), Some(theirs)) = (ours, theirs) else { return Ok(()) };
            let plain = pattern.replace(['*', '?', '[', ']', '{', '}'], "");
            for p in paths.iter().map(String::as_str).chain([pattern.as_str(), plain.as_str()]) {
                prop_assert_eq!(ours.is_match(p), theirs.is_match(p), "{} on {}", pattern, p);
            }
        }
    }
}
