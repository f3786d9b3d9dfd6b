//! What part of its batch a batch directory holds, and whether a set of shards makes the
//! whole batch.
//!
//! Every `batch.json` records its [`Scope`]: the shard it ran (`I/N`, absent for a whole
//! batch) and the names of every member of the whole batch, with their digest. `hatrack
//! merge` [`combine`]s the shards' scopes: shards of different batches (another member list,
//! another shard count), a shard given twice, or a member a shard cannot hold are refused;
//! a shard or member that is absent is named, and only `merge --partial` accepts that — the
//! merged batch then records what it lacks ([`Missing`]) and its gate cannot be met.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{in_shard, valid_name, Member};
use crate::cli::Shard;

/// Most names a message lists before "… and N more".
const LISTED: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// `I/N` for a directory written by `run … --shard I/N`; absent when it holds the whole
    /// batch (a run without `--shard`, or a merge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// sha256 (hex) of [`Scope::members`], each name followed by a newline.
    pub members_digest: String,
    /// Every member (run-directory name) of the whole batch, every shard's, sorted.
    pub members: Vec<String>,
    /// What a `merge --partial` lacked; the batch's gate is then not met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Missing>,
}

/// Shards and members a partial merge lacked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    /// Shards not merged, as `I/N`.
    pub shards: Vec<String>,
    /// Members whose run directory the merge did not get, sorted.
    pub workspaces: Vec<String>,
}

impl Scope {
    /// The scope of a batch of `all` members (the whole list, before a shard picks its part).
    pub fn new(all: &[Member], shard: Option<Shard>) -> Scope {
        let names: Vec<String> = all.iter().map(|m| m.name.clone()).collect();
        Scope::of_names(names, shard.map(|s| s.to_string()), None)
    }

    fn of_names(
        mut members: Vec<String>,
        shard: Option<String>,
        missing: Option<Missing>,
    ) -> Scope {
        members.sort();
        members.dedup();
        Scope {
            shard,
            members_digest: digest(&members),
            members,
            missing,
        }
    }

    /// The one-line account of what a partial merge lacks, or `None` when it is whole.
    pub fn missing_reason(&self) -> Option<String> {
        let missing = self.missing.as_ref()?;
        let shards = if missing.shards.is_empty() {
            String::new()
        } else {
            format!("shard(s) {} not merged, ", missing.shards.join(", "))
        };
        Some(format!(
            "incomplete: {shards}{} of {} workspace(s) never reviewed, so the gate is not met",
            missing.workspaces.len(),
            self.members.len(),
        ))
    }
}

/// sha256 of the names, each followed by a newline (the names hold no newline).
pub fn digest(sorted_names: &[String]) -> String {
    let mut hasher = Sha256::new();
    for name in sorted_names {
        hasher.update(name.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// One batch directory given to a merge: how to name it in messages, its scope, and the
/// members its index lists.
pub struct Part<'a> {
    pub shown: String,
    pub scope: Option<&'a Scope>,
    pub names: &'a [String],
}

/// What a set of shards makes: the whole batch's scope (with what is missing, if anything).
#[derive(Debug)]
pub struct Combined {
    pub scope: Scope,
}

impl Combined {
    pub fn is_complete(&self) -> bool {
        self.scope.missing.is_none()
    }
}

/// Checks that the parts are shards of one batch, each once, each holding only members its
/// shard can hold, and says what they lack. Errors name the directory and what to do.
pub fn combine(parts: &[Part<'_>]) -> Result<Combined, String> {
    if parts.is_empty() {
        return Err("no shard directory given".into());
    }
    let mut covered: BTreeMap<u32, &str> = BTreeMap::new();
    let mut count = None;
    let mut reference: Option<(&Part<'_>, &Scope)> = None;
    let mut present = BTreeSet::new();
    for part in parts {
        let scope = checked_scope(part)?;
        match reference {
            Some(first) => same_batch(first, (part, scope))?,
            None => reference = Some((part, scope)),
        }
        let (indices, n) = coverage(scope).map_err(|e| format!("{}: {e}", part.shown))?;
        match count {
            None => count = Some((n, part.shown.as_str())),
            Some((m, other)) if m != n => {
                return Err(format!(
                    "{other} splits the batch into {m} shard(s) but {} into {n}: merge the shards of one `--shard I/N` split",
                    part.shown
                ));
            }
            Some(_) => {}
        }
        for i in &indices {
            if let Some(other) = covered.insert(*i, &part.shown) {
                return Err(format!(
                    "shard {i}/{n} is given twice ({other} and {}); merge each shard once",
                    part.shown
                ));
            }
        }
        check_members(part, scope, (&indices, n), &mut present)?;
    }
    let (_, scope) = reference.expect("at least one part");
    let (n, _) = count.expect("at least one part");
    let shards: Vec<String> = (1..=n)
        .filter(|i| !covered.contains_key(i))
        .map(|i| format!("{i}/{n}"))
        .collect();
    let workspaces: Vec<String> = scope
        .members
        .iter()
        .filter(|m| !present.contains(m.as_str()))
        .cloned()
        .collect();
    let missing =
        (!shards.is_empty() || !workspaces.is_empty()).then_some(Missing { shards, workspaces });
    Ok(Combined {
        scope: Scope::of_names(scope.members.clone(), None, missing),
    })
}

/// A part's scope, as hatrack writes it: present (an older hatrack wrote none), its member
/// names valid and sorted, and its digest matching them.
fn checked_scope<'a>(part: &Part<'a>) -> Result<&'a Scope, String> {
    let scope = part.scope.ok_or_else(|| {
        format!(
            "{}: batch.json records no member list (an older hatrack wrote it), so a merge cannot tell whether shards are missing; run that shard again with this hatrack",
            part.shown
        )
    })?;
    if scope.members.iter().any(|n| !valid_name(n))
        || !scope.members.windows(2).all(|w| w[0] < w[1])
        || digest(&scope.members) != scope.members_digest
    {
        return Err(format!(
            "{}: batch.json's member list is not one hatrack writes (unsorted, or not matching its digest): was it edited? Run that shard again",
            part.shown
        ));
    }
    Ok(scope)
}

/// Refuses a part whose whole-batch member list differs from the first part's.
fn same_batch(
    (other, theirs): (&Part<'_>, &Scope),
    (part, scope): (&Part<'_>, &Scope),
) -> Result<(), String> {
    if theirs.members_digest != scope.members_digest {
        return Err(format!(
            "{} and {} are shards of different batches ({} and {} workspace(s), member digests {} and {}): merge the shards of one batch, each run with the same workspace list",
            other.shown,
            part.shown,
            theirs.members.len(),
            scope.members.len(),
            &theirs.members_digest[..12],
            &scope.members_digest[..12],
        ));
    }
    Ok(())
}

/// Refuses a part holding a member that is not in the batch or not in the shards it covers
/// (`indices` of `n`); records the members it holds in `present`.
fn check_members<'a>(
    part: &Part<'a>,
    scope: &Scope,
    (indices, n): (&BTreeSet<u32>, u32),
    present: &mut BTreeSet<&'a str>,
) -> Result<(), String> {
    for name in part.names {
        let holds = scope.members.binary_search(name).is_ok()
            && (n == 1
                || indices
                    .iter()
                    .any(|&i| in_shard(name, Shard { index: i, count: n })));
        if !holds {
            return Err(format!(
                "{}: holds {name}, which is not a member of its shard of this batch: was the shard run with another workspace list, or edited?",
                part.shown
            ));
        }
        present.insert(name.as_str());
    }
    Ok(())
}

/// Which shards (1-based) of how many a directory's scope covers.
fn coverage(scope: &Scope) -> Result<(BTreeSet<u32>, u32), String> {
    if let Some(shard) = &scope.shard {
        let s = parse(shard)?;
        return Ok((BTreeSet::from([s.index]), s.count));
    }
    match &scope.missing {
        Some(missing) if !missing.shards.is_empty() => {
            let absent = missing
                .shards
                .iter()
                .map(|s| parse(s))
                .collect::<Result<Vec<_>, _>>()?;
            let n = absent[0].count;
            if absent.iter().any(|s| s.count != n) {
                return Err(
                    "batch.json's missing shards disagree on the shard count: was it edited?"
                        .into(),
                );
            }
            let gone: BTreeSet<u32> = absent.iter().map(|s| s.index).collect();
            Ok(((1..=n).filter(|i| !gone.contains(i)).collect(), n))
        }
        _ => Ok((BTreeSet::from([1]), 1)),
    }
}

fn parse(text: &str) -> Result<Shard, String> {
    let bad = || format!("batch.json names the shard {text:?}, not I/N: was it edited?");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let index: u32 = i.parse().map_err(|_| bad())?;
    let count: u32 = n.parse().map_err(|_| bad())?;
    if index == 0 || index > count || count > 1000 {
        return Err(bad());
    }
    Ok(Shard { index, count })
}

/// Names for a message: the first [`LISTED`], then how many more.
pub fn listing(names: &[String]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    let mut text = names
        .iter()
        .take(LISTED)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED {
        text.push_str(&format!(" … and {} more", names.len() - LISTED));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn batch(names: &[&str]) -> Vec<Member> {
        names
            .iter()
            .map(|n| Member {
                name: n.to_string(),
                workspace: PathBuf::from(n),
                hats: Default::default(),
            })
            .collect()
    }

    fn shards(all: &[Member], count: u32) -> Vec<(Scope, Vec<String>)> {
        (1..=count)
            .map(|index| {
                let shard = Shard { index, count };
                let names = all
                    .iter()
                    .filter(|m| in_shard(&m.name, shard))
                    .map(|m| m.name.clone())
                    .collect();
                (Scope::new(all, Some(shard)), names)
            })
            .collect()
    }

    fn parts(given: &[(Scope, Vec<String>)]) -> Vec<Part<'_>> {
        given
            .iter()
            .enumerate()
            .map(|(i, (scope, names))| Part {
                shown: format!("dir{i}"),
                scope: Some(scope),
                names,
            })
            .collect()
    }

    #[test]
    fn every_shard_makes_the_whole_batch_and_a_missing_one_is_named() {
        let all = batch(&["a", "b", "c", "d", "e", "f", "g", "h", "i"]);
        let given = shards(&all, 3);
        let whole = combine(&parts(&given)).unwrap();
        assert!(whole.is_complete());
        assert_eq!(whole.scope, Scope::new(&all, None));

        let partial = combine(&parts(&given[..2])).unwrap();
        let missing = partial.scope.missing.clone().unwrap();
        assert_eq!(missing.shards, ["3/3"]);
        assert_eq!(missing.workspaces, given[2].1);
        assert!(partial.scope.missing_reason().unwrap().contains("3/3"));

        // The partial merge and the missing shard make the whole batch again.
        let again = [
            (
                partial.scope.clone(),
                [given[0].1.clone(), given[1].1.clone()].concat(),
            ),
            given[2].clone(),
        ];
        assert_eq!(combine(&parts(&again)).unwrap().scope, whole.scope);
    }

    #[test]
    fn shards_of_other_batches_twice_given_or_edited_are_refused() {
        let all = batch(&["a", "b", "c", "d"]);
        let other = batch(&["a", "b", "c", "x"]);
        let mine = shards(&all, 2);
        let theirs = shards(&other, 2);
        let mixed = [mine[0].clone(), theirs[1].clone()];
        assert!(combine(&parts(&mixed))
            .unwrap_err()
            .contains("different batches"));
        let twice = [mine[0].clone(), (mine[0].0.clone(), Vec::new())];
        assert!(combine(&parts(&twice)).unwrap_err().contains("given twice"));
        let split = [mine[0].clone(), shards(&all, 3)[1].clone()];
        assert!(combine(&parts(&split))
            .unwrap_err()
            .contains("2 shard(s) but"));
        let mut moved = mine.clone();
        let stray = all
            .iter()
            .find(|m| !in_shard(&m.name, Shard { index: 1, count: 2 }))
            .map(|m| m.name.clone())
            .unwrap();
        moved[0].1.push(stray);
        moved[1].1.clear();
        assert!(combine(&parts(&moved))
            .unwrap_err()
            .contains("not a member of its shard"));
        let mut edited = mine[0].clone();
        edited.0.members.push("zz".into());
        assert!(combine(&parts(&[edited])).unwrap_err().contains("edited"));
        let none = [Part {
            shown: "old".into(),
            scope: None,
            names: &[],
        }];
        assert!(combine(&none).unwrap_err().contains("no member list"));
    }
}
