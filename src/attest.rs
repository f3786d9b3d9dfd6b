//! Signed runs: a DSSE envelope over an in-toto Statement whose subjects are every file of a
//! run directory, with an Ed25519 signature any DSSE verifier can check.
//!
//! - **Envelope** ([DSSE](https://github.com/secure-systems-lab/dsse)): `{"payloadType":
//!   "application/vnd.in-toto+json", "payload": BASE64(statement), "signatures": [{"keyid",
//!   "sig": BASE64(signature)}]}`, one line in `RUN/attestation.intoto.jsonl`. The signature
//!   is Ed25519 over the pre-authentication encoding ([`pae`]): `"DSSEv1" SP len(type) SP type
//!   SP len(body) SP body`, lengths in ASCII decimal. `keyid` is the sha256 (hex) of the raw
//!   32-byte public key.
//! - **Statement** (in-toto v1): one subject per file of the run directory — every file but
//!   the attestation itself and the lock file — named by its `/`-separated path relative to
//!   the run directory with its sha256, sorted by name; `predicateType` [`PREDICATE_TYPE`].
//! - **Predicate** ([`Predicate`]): the stage and its definition digest, the prompts digest,
//!   the model settings and policy as run.json records them, the models the exchanges asked,
//!   and the gate (met or not, exit code) as report.json gives it.
//!
//! Keys are PEM files: an Ed25519 private key in PKCS#8 (`openssl genpkey -algorithm
//! ed25519`) to sign, its SubjectPublicKeyInfo (`openssl pkey -pubout`) to verify. Nothing
//! here prints or writes a private key.
//!
//! This module is the format and the checks; `commands/attest.rs` and `commands/verify.rs`
//! read the arguments and map the outcome to an exit code.

use std::io::{BufRead, Read};
use std::path::{Component, Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The attestation's file in the run directory: one DSSE envelope per line (one line).
pub const ENVELOPE_FILE: &str = "attestation.intoto.jsonl";
/// The DSSE payload type of an in-toto Statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The in-toto Statement version.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// hatrack's predicate: what a run was and how its gate ended (see [`Predicate`]).
pub const PREDICATE_TYPE: &str = "https://hatrack.dev/attestation/run/v1";

/// Files at the root of a run directory that are never subjects: the attestation itself,
/// and the lock file hatrack creates where a directory cannot be locked itself.
pub const NOT_SUBJECTS: [&str; 2] = [ENVELOPE_FILE, ".hatrack.lock"];

/// What to do about a key, said in every key error.
pub const KEY_HELP: &str = "generate a signing key with `openssl genpkey -algorithm ed25519 -out key.pem` and its public key with `openssl pkey -in key.pem -pubout -out key.pub.pem`";

/// Largest key file read (a PEM Ed25519 key is about 120 bytes).
const MAX_KEY_BYTES: u64 = 64 * 1024;
/// Largest attestation, run.json or report.json read.
const MAX_READ: u64 = 64 * 1024 * 1024;
/// Most files a run directory may hold to be attested, and how deep.
const MAX_FILES: usize = 200_000;
const MAX_DEPTH: usize = 32;
/// Most problems a failed verification lists.
const LISTED: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// A key file that cannot be used; the message says what to do.
    #[error("{}: {message}", .path.display())]
    Key { path: PathBuf, message: String },
    /// A run directory that cannot be attested or checked (not a run, unreadable).
    #[error("{}: {message}", .path.display())]
    Run { path: PathBuf, message: String },
    /// A run directory without an attestation.
    #[error("{}: not signed (no {ENVELOPE_FILE}); sign it with `hatrack attest {} --key KEY.pem`", .dir.display(), .dir.display())]
    Unsigned { dir: PathBuf },
    /// A signed run directory that does not match its attestation: each problem names a file.
    #[error("{} does not verify: {}", .dir.display(), listing(.problems))]
    Mismatch { dir: PathBuf, problems: Vec<String> },
}

fn listing(problems: &[String]) -> String {
    let mut text = problems
        .iter()
        .take(LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > LISTED {
        text.push_str(&format!("; and {} more", problems.len() - LISTED));
    }
    text
}

// ---------------------------------------------------------------------------------------
// DSSE

/// The DSSE pre-authentication encoding: what is signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Standard base64 (with padding) of the statement's bytes.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    /// Standard base64 of the 64-byte Ed25519 signature.
    pub sig: String,
}

/// An Ed25519 private key, read from PKCS#8 PEM. Its `Debug` shows the key id only.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(keyid {})", self.keyid())
    }
}

/// An Ed25519 public key (the raw 32 bytes), read from SubjectPublicKeyInfo PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; 32],
}

/// A key's id: the sha256 (hex) of its raw 32-byte public key.
pub fn keyid(public: &[u8]) -> String {
    hex::encode(Sha256::digest(public))
}

impl SigningKey {
    /// Reads a signing key from a PEM file; every error names the file and what to do.
    pub fn read(path: &Path) -> Result<SigningKey, AttestError> {
        read_key(path, SigningKey::from_pem)
    }

    /// An Ed25519 private key from PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(text: &[u8]) -> Result<SigningKey, String> {
        let pem = Pem::parse(text)?;
        match pem.label.as_str() {
            "PRIVATE KEY" => {}
            "PUBLIC KEY" => {
                return Err(format!(
                    "a public key, but signing needs the private key: pass the PEM file `openssl genpkey -algorithm ed25519` wrote (keep it secret), and give the public key to `hatrack verify`; {KEY_HELP}"
                ))
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err(
                    "an encrypted private key, which hatrack cannot use: write an unencrypted copy for the signing job with `openssl pkey -in KEY.pem -out plain.pem` (and keep it secret)".into(),
                )
            }
            other => return Err(wrong_label(other, "an Ed25519 private key in PKCS#8 PEM (-----BEGIN PRIVATE KEY-----)")),
        }
        if !is_ed25519(&pem.der) {
            return Err(format!(
                "a private key of another algorithm, not Ed25519; {KEY_HELP}"
            ));
        }
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pem.der)
            .map_err(|e| format!("not a valid Ed25519 PKCS#8 private key ({e}); {KEY_HELP}"))?;
        Ok(SigningKey { pair })
    }

    pub fn keyid(&self) -> String {
        keyid(self.pair.public_key().as_ref())
    }

    pub fn public_key(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey { bytes }
    }

    /// A DSSE envelope over `payload` of `payload_type`, signed with this key.
    pub fn sign(&self, payload_type: &str, payload: &[u8]) -> Envelope {
        let sig = self.pair.sign(&pae(payload_type, payload));
        Envelope {
            payload_type: payload_type.to_string(),
            payload: BASE64.encode(payload),
            signatures: vec![EnvelopeSignature {
                keyid: self.keyid(),
                sig: BASE64.encode(sig.as_ref()),
            }],
        }
    }
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { OID 1.3.101.112 },
/// BIT STRING (32 bytes) }.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// The DER of the Ed25519 algorithm identifier's OID (1.3.101.112).
const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

fn is_ed25519(der: &[u8]) -> bool {
    der.windows(ED25519_OID.len())
        .take(16)
        .any(|w| w == ED25519_OID)
}

impl PublicKey {
    /// Reads a public key from a PEM file; every error names the file and what to do.
    pub fn read(path: &Path) -> Result<PublicKey, AttestError> {
        read_key(path, PublicKey::from_pem)
    }

    /// An Ed25519 public key from SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(text: &[u8]) -> Result<PublicKey, String> {
        let pem = Pem::parse(text)?;
        match pem.label.as_str() {
            "PUBLIC KEY" => {}
            "PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => {
                return Err(
                    "a private key, but verifying takes the public key: write it with `openssl pkey -in key.pem -pubout -out key.pub.pem` and keep the private key out of the verifying job".into(),
                )
            }
            other => {
                return Err(wrong_label(
                    other,
                    "an Ed25519 public key in PEM (-----BEGIN PUBLIC KEY-----)",
                ))
            }
        }
        if pem.der.len() != SPKI_PREFIX.len() + 32 || pem.der[..SPKI_PREFIX.len()] != SPKI_PREFIX {
            return Err(if is_ed25519(&pem.der) {
                format!("not a valid Ed25519 public key; {KEY_HELP}")
            } else {
                format!("a public key of another algorithm, not Ed25519; {KEY_HELP}")
            });
        }
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&pem.der[SPKI_PREFIX.len()..]);
        Ok(PublicKey { bytes })
    }

    pub fn keyid(&self) -> String {
        keyid(&self.bytes)
    }

    /// Whether `sig` is this key's Ed25519 signature of `message`.
    pub fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.bytes)
            .verify(message, sig)
            .is_ok()
    }

    /// The payload of `envelope` when one of its signatures is this key's over its PAE.
    pub fn open(&self, envelope: &Envelope) -> Result<Vec<u8>, String> {
        let payload = BASE64
            .decode(envelope.payload.as_bytes())
            .map_err(|e| format!("its payload is not base64 ({e})"))?;
        let message = pae(&envelope.payload_type, &payload);
        let verified = envelope.signatures.iter().any(|s| {
            BASE64
                .decode(s.sig.as_bytes())
                .is_ok_and(|sig| self.verifies(&message, &sig))
        });
        if verified {
            return Ok(payload);
        }
        let ids: Vec<&str> = envelope
            .signatures
            .iter()
            .map(|s| s.keyid.as_str())
            .collect();
        Err(if ids.contains(&self.keyid().as_str()) {
            "the signature does not match its content: the envelope was changed after it was signed"
                .to_string()
        } else {
            format!(
                "no signature by this key (its keyid is {}; the envelope's: {}): signed by another key, or the envelope was changed",
                self.keyid(),
                if ids.is_empty() { "none".into() } else { ids.join(", ") }
            )
        })
    }
}

fn wrong_label(label: &str, wanted: &str) -> String {
    let kind = match label {
        "RSA PRIVATE KEY" | "RSA PUBLIC KEY" => "an RSA key",
        "EC PRIVATE KEY" => "an EC key",
        "OPENSSH PRIVATE KEY" => "an OpenSSH key",
        "CERTIFICATE" => "a certificate",
        _ => "",
    };
    if kind.is_empty() {
        format!("holds a PEM {label:?} block, not {wanted}; {KEY_HELP}")
    } else {
        format!("holds {kind}, not {wanted}; {KEY_HELP}")
    }
}

/// A key file read and parsed by `from_pem`; every error names the file.
fn read_key<K>(path: &Path, from_pem: fn(&[u8]) -> Result<K, String>) -> Result<K, AttestError> {
    let text = read_key_file(path)?;
    from_pem(&text).map_err(|message| AttestError::Key {
        path: path.to_path_buf(),
        message,
    })
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, AttestError> {
    let bad = |message: String| AttestError::Key {
        path: path.to_path_buf(),
        message,
    };
    // A key may be a link (mounted secrets are): it is the user's own file, read as given.
    let any = crate::safe_fs::Kind {
        what: "a key",
        max: u64::MAX,
    };
    let (file, _) = crate::safe_fs::open_bounded(path, any, crate::safe_fs::Links::Follow)
        .map_err(|e| match e.why {
            crate::safe_fs::ReadWhy::Io(e) => bad(format!("cannot read the key ({e}); {KEY_HELP}")),
            _ => bad(format!("not a regular file; {KEY_HELP}")),
        })?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot read the key ({e})")))?;
    if bytes.len() as u64 > MAX_KEY_BYTES {
        return Err(bad(format!(
            "larger than any PEM key ({MAX_KEY_BYTES} bytes); {KEY_HELP}"
        )));
    }
    Ok(bytes)
}

/// The first PEM block of a file: its label and decoded bytes.
struct Pem {
    label: String,
    der: Vec<u8>,
}

impl Pem {
    fn parse(bytes: &[u8]) -> Result<Pem, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            format!("not a PEM file (binary; a DER key can be converted with `openssl pkey -inform DER -in KEY.der -out key.pem`); {KEY_HELP}")
        })?;
        let mut lines = text.lines().map(str::trim);
        let label = lines
            .by_ref()
            .find_map(|l| {
                l.strip_prefix("-----BEGIN ")
                    .and_then(|r| r.strip_suffix("-----"))
            })
            .ok_or_else(|| format!("not a PEM file (no -----BEGIN line); {KEY_HELP}"))?
            .to_string();
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut ended = false;
        for line in lines {
            if line == end {
                ended = true;
                break;
            }
            if line.contains(':') {
                return Err(
                    "an encrypted PEM key (it has Proc-Type/DEK-Info headers), which hatrack cannot use: write an unencrypted copy with `openssl pkey -in KEY.pem -out plain.pem`".into(),
                );
            }
            body.push_str(line);
        }
        if !ended {
            return Err(format!(
                "a PEM block with no `{end}` line: the file is cut short"
            ));
        }
        let der = BASE64
            .decode(body.as_bytes())
            .map_err(|e| format!("its PEM body is not base64 ({e}): the file is damaged"))?;
        Ok(Pem { label, der })
    }
}

// ---------------------------------------------------------------------------------------
// The statement

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Predicate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The file's path relative to the run directory, `/`-separated.
    pub name: String,
    pub digest: SubjectDigest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectDigest {
    /// Lower-case hex.
    pub sha256: String,
}

/// hatrack's predicate ([`PREDICATE_TYPE`]), documented in the README ("Signed runs").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predicate {
    /// The hatrack that signed.
    pub hatrack_version: String,
    /// The run as run.json records it.
    pub run: RunFacts,
    pub stage: StageFacts,
    /// The prompt templates' digest (run.json `prompts.digest`).
    pub prompts_digest: String,
    /// run.json's `model`: settings and endpoints (never a key), as recorded.
    pub model: Value,
    /// run.json's `policy` (the effective policy, each key's source), when it records one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Value>,
    /// Every model name the exchanges asked (their requests' `model`), sorted.
    pub models: Vec<String>,
    /// How the gate ended, as report.json gives it.
    pub gate: Gate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFacts {
    /// The hatrack that recorded the run.
    pub hatrack_version: String,
    pub started_at: String,
    pub record_mode: String,
    pub samples: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageFacts {
    pub name: String,
    pub definition_digest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// `"met"` or `"not met"`.
    pub outcome: String,
    pub signal_met: bool,
    /// The run's exit code: 0 met, 1 not met.
    pub exit_code: i64,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_unknown: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_unstable: Option<bool>,
}

impl Gate {
    fn outcome_word(met: bool) -> &'static str {
        if met {
            "met"
        } else {
            "not met"
        }
    }
}

/// A run directory's files, parsed where the predicate needs them.
pub struct RunFiles {
    pub run: Value,
    pub report: Value,
    /// Model names in the exchanges' requests.
    pub models: Vec<String>,
}

/// The statement over `subjects` for the run whose files are `files`.
pub fn statement(subjects: Vec<Subject>, files: &RunFiles) -> Result<Statement, String> {
    let run = &files.run;
    let report = &files.report;
    let text = |v: &Value, pointer: &str, file: &str| -> Result<String, String> {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                format!("{file} has no {pointer}: is this a run directory hatrack wrote?")
            })
    };
    let outcome = report
        .pointer("/outcome")
        .ok_or("report.json has no outcome: is this a run directory hatrack wrote?")?;
    let signal_met = outcome
        .get("signal_met")
        .and_then(Value::as_bool)
        .ok_or("report.json has no outcome.signal_met")?;
    let exit_code = outcome
        .get("exit_code")
        .and_then(Value::as_i64)
        .ok_or("report.json has no outcome.exit_code")?;
    let model = run
        .get("model")
        .filter(|m| m.is_object())
        .cloned()
        .ok_or("run.json has no model settings: is this a run directory hatrack wrote?")?;
    Ok(Statement {
        statement_type: STATEMENT_TYPE.into(),
        subject: subjects,
        predicate_type: PREDICATE_TYPE.into(),
        predicate: Predicate {
            hatrack_version: env!("CARGO_PKG_VERSION").into(),
            run: RunFacts {
                hatrack_version: text(run, "/hatrack_version", "run.json")?,
                started_at: text(run, "/started_at", "run.json")?,
                record_mode: text(run, "/record_mode", "run.json")?,
                samples: run.get("samples").and_then(Value::as_u64).unwrap_or(1),
            },
            stage: StageFacts {
                name: text(run, "/stage/name", "run.json")?,
                definition_digest: text(run, "/stage/definition_digest", "run.json")?,
            },
            prompts_digest: text(run, "/prompts/digest", "run.json")?,
            model,
            policy: run.get("policy").cloned(),
            models: files.models.clone(),
            gate: Gate {
                outcome: Gate::outcome_word(signal_met).into(),
                signal_met,
                exit_code,
                summary: outcome
                    .get("summary")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into(),
                allow_unknown: outcome.get("allow_unknown").and_then(Value::as_bool),
                allow_unstable: outcome.get("allow_unstable").and_then(Value::as_bool),
            },
        },
    })
}

/// Problems with `files` against a verified statement's predicate: the reports and run.json
/// must say what was signed (they are subjects too, so this catches a signer's mistake or a
/// predicate built by another tool, rather than an edit).
pub fn disagreements(statement: &Statement, files: &RunFiles) -> Vec<String> {
    let mut problems = Vec::new();
    match self::statement(Vec::new(), files) {
        Err(e) => problems.push(e),
        Ok(now) => {
            let (signed, now) = (&statement.predicate, &now.predicate);
            if signed.gate.signal_met != now.gate.signal_met
                || signed.gate.exit_code != now.gate.exit_code
            {
                problems.push(format!(
                    "report.json says the signal is {} (exit {}) but the attestation says {} (exit {})",
                    now.gate.outcome, now.gate.exit_code, signed.gate.outcome, signed.gate.exit_code
                ));
            }
            if signed.stage != now.stage || signed.prompts_digest != now.prompts_digest {
                problems.push(
                    "run.json names another stage or prompts digest than the attestation".into(),
                );
            }
            if signed.model != now.model || signed.policy != now.policy {
                problems.push(
                    "run.json records other model settings or policy than the attestation".into(),
                );
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------
// The run directory

/// Every file of the run directory but [`NOT_SUBJECTS`], with its sha256, sorted by name. A
/// symbolic link or a special file is refused: hatrack writes none into a run directory.
pub fn subjects(run_dir: &Path) -> Result<Vec<Subject>, AttestError> {
    let mut found = Vec::new();
    walk(run_dir, run_dir, "", 0, &mut found)?;
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn walk(
    root: &Path,
    dir: &Path,
    rel: &str,
    depth: usize,
    found: &mut Vec<Subject>,
) -> Result<(), AttestError> {
    let bad = |path: &Path, message: String| AttestError::Run {
        path: path.to_path_buf(),
        message,
    };
    if depth > MAX_DEPTH {
        return Err(bad(dir, "nested deeper than any run directory".into()));
    }
    let entries = std::fs::read_dir(dir)
        .and_then(|d| d.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(dir, format!("cannot read it ({e})")))?;
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().into_string().map_err(|n| {
            bad(
                &path,
                format!(
                    "a file name that is not UTF-8 ({n:?}); hatrack writes none into a run directory"
                ),
            )
        })?;
        let child = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if rel.is_empty() && NOT_SUBJECTS.contains(&name.as_str()) {
            continue;
        }
        let meta = path
            .symlink_metadata()
            .map_err(|e| bad(&path, format!("cannot read it ({e})")))?;
        if meta.is_dir() {
            walk(root, &path, &child, depth + 1, found)?;
        } else if meta.is_file() {
            if found.len() >= MAX_FILES {
                return Err(bad(root, format!("more than {MAX_FILES} files")));
            }
            let sha256 =
                sha256_file(&path).map_err(|e| bad(&path, format!("cannot read it ({e})")))?;
            found.push(Subject {
                name: child,
                digest: SubjectDigest { sha256 },
            });
        } else {
            return Err(bad(
                &path,
                "a symbolic link or special file; hatrack writes none into a run directory — remove it".into(),
            ));
        }
    }
    Ok(())
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = crate::safe_fs::open_read_no_follow(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Reads a run directory's run.json, report.json and the model names of its exchanges.
pub fn read_run(run_dir: &Path) -> Result<RunFiles, AttestError> {
    let run = read_json(run_dir, crate::run::rundir::RUN_FILE)?;
    let report = read_json(run_dir, "report.json")?;
    let path = run_dir.join(crate::run::rundir::EXCHANGES_FILE);
    let cannot = |e: std::io::Error| AttestError::Run {
        path: path.clone(),
        message: format!("cannot read it ({e})"),
    };
    // Line by line: a transcript can be large, and only each request's model is needed.
    let file = crate::safe_fs::open_read_no_follow(&path).map_err(cannot)?;
    let mut models = std::collections::BTreeSet::new();
    for (i, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(cannot)?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value: Value = serde_json::from_slice(&line).map_err(|e| AttestError::Run {
            path: path.clone(),
            message: format!(
                "line {} is not JSON ({e}): the transcript is damaged; restore it or record the run again",
                i + 1
            ),
        })?;
        if let Some(model) = value.pointer("/request/model").and_then(Value::as_str) {
            models.insert(model.to_string());
        }
    }
    Ok(RunFiles {
        run,
        report,
        models: models.into_iter().collect(),
    })
}

fn read_json(run_dir: &Path, name: &str) -> Result<Value, AttestError> {
    let path = run_dir.join(name);
    let bytes = read_capped(&path, MAX_READ).map_err(|message| AttestError::Run {
        path: path.clone(),
        message: if name == "report.json" {
            format!("{message}; only a run that finished with a report can be attested")
        } else {
            message
        },
    })?;
    serde_json::from_slice(&bytes).map_err(|e| AttestError::Run {
        path,
        message: format!("not valid JSON ({e})"),
    })
}

fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, String> {
    // The one bounded reader: a FIFO or a device is refused at once, a link is never
    // followed, and nothing past `cap` is read.
    let kind = crate::safe_fs::Kind {
        what: "a signed run's file",
        max: cap,
    };
    crate::safe_fs::read_bounded(path, kind, crate::safe_fs::Links::Never).map_err(|e| {
        match e.why {
            crate::safe_fs::ReadWhy::TooLarge { .. } => format!("larger than {cap} bytes"),
            crate::safe_fs::ReadWhy::Io(io) => format!("cannot read it ({io})"),
            why => format!("cannot read it ({why})"),
        }
    })
}

/// Signs the run directory: the envelope line to write into [`ENVELOPE_FILE`], and the
/// statement it carries.
pub fn attest(run_dir: &Path, key: &SigningKey) -> Result<(String, Statement), AttestError> {
    let statement = unsigned(run_dir)?;
    let payload = serde_json::to_vec(&statement).expect("a statement serialises");
    let envelope = key.sign(PAYLOAD_TYPE, &payload);
    let mut line = serde_json::to_string(&envelope).expect("an envelope serialises");
    line.push('\n');
    Ok((line, statement))
}

/// The statement over the run directory as it is now, unsigned (for `actions/attest` and
/// other signers).
pub fn unsigned(run_dir: &Path) -> Result<Statement, AttestError> {
    let files = read_run(run_dir)?;
    let subjects = subjects(run_dir)?;
    statement(subjects, &files).map_err(|message| AttestError::Run {
        path: run_dir.to_path_buf(),
        message,
    })
}

/// What a successful verification found.
#[derive(Debug)]
pub struct Verified {
    pub statement: Statement,
    pub keyid: String,
}

/// Checks a signed run directory with `key`: the envelope's signature, the statement's
/// types, every subject's digest, that no file was added, and that run.json and report.json
/// agree with the predicate. Every problem names its file.
pub fn verify(run_dir: &Path, key: &PublicKey) -> Result<Verified, AttestError> {
    let envelope_path = run_dir.join(ENVELOPE_FILE);
    if envelope_path.symlink_metadata().is_err() {
        return Err(AttestError::Unsigned {
            dir: run_dir.to_path_buf(),
        });
    }
    let envelope = read_envelope(run_dir, &envelope_path)?;
    let statement = open_statement(run_dir, &envelope, key)?;
    let problems = subjects_outside(&statement);
    if !problems.is_empty() {
        return Err(AttestError::Mismatch {
            dir: run_dir.to_path_buf(),
            problems,
        });
    }
    let mut problems = subject_changes(&statement, &subjects(run_dir)?);
    if problems.is_empty() {
        let files = read_run(run_dir)?;
        problems.extend(disagreements(&statement, &files));
    }
    if !problems.is_empty() {
        return Err(AttestError::Mismatch {
            dir: run_dir.to_path_buf(),
            problems,
        });
    }
    Ok(Verified {
        statement,
        keyid: key.keyid(),
    })
}

/// A verification that fails on one problem.
fn mismatch(run_dir: &Path, problem: String) -> AttestError {
    AttestError::Mismatch {
        dir: run_dir.to_path_buf(),
        problems: vec![problem],
    }
}

/// The one DSSE envelope of [`ENVELOPE_FILE`], of the in-toto payload type; anything else
/// is a mismatch (the file was edited).
fn read_envelope(run_dir: &Path, envelope_path: &Path) -> Result<Envelope, AttestError> {
    let bytes = read_capped(envelope_path, MAX_READ)
        .map_err(|m| mismatch(run_dir, format!("{ENVELOPE_FILE}: {m}")))?;
    let lines: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    let [line] = lines.as_slice() else {
        return Err(mismatch(
            run_dir,
            format!(
                "{ENVELOPE_FILE}: holds {} envelopes, hatrack writes one: was it edited?",
                lines.len()
            ),
        ));
    };
    let envelope: Envelope = serde_json::from_slice(line).map_err(|e| {
        mismatch(
            run_dir,
            format!("{ENVELOPE_FILE}: not a DSSE envelope ({e}): was it edited?"),
        )
    })?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(mismatch(
            run_dir,
            format!(
                "{ENVELOPE_FILE}: its payloadType is {:?}, not {PAYLOAD_TYPE:?}",
                envelope.payload_type
            ),
        ));
    }
    Ok(envelope)
}

/// The statement the envelope carries, once `key` has checked its signature, and only if it
/// is an in-toto Statement with hatrack's predicate.
fn open_statement(
    run_dir: &Path,
    envelope: &Envelope,
    key: &PublicKey,
) -> Result<Statement, AttestError> {
    let payload = key
        .open(envelope)
        .map_err(|m| mismatch(run_dir, format!("{ENVELOPE_FILE}: {m}")))?;
    let statement: Statement = serde_json::from_slice(&payload).map_err(|e| {
        mismatch(
            run_dir,
            format!("{ENVELOPE_FILE}: its statement is not one hatrack writes ({e})"),
        )
    })?;
    if statement.statement_type != STATEMENT_TYPE || statement.predicate_type != PREDICATE_TYPE {
        return Err(mismatch(run_dir, format!(
            "{ENVELOPE_FILE}: a statement of type {:?} with predicate {:?}, not {STATEMENT_TYPE:?} with {PREDICATE_TYPE:?}",
            statement.statement_type, statement.predicate_type
        )));
    }
    Ok(statement)
}

/// A problem for each subject name that is not a plain path inside the run directory: such
/// a statement is refused before any file is read.
fn subjects_outside(statement: &Statement) -> Vec<String> {
    statement
        .subject
        .iter()
        .filter(|s| !plain_relative(&s.name))
        .map(|s| {
            format!(
                "{ENVELOPE_FILE}: names the subject {}, which is not a path inside the run directory",
                crate::safe_fs::printable_name(&s.name)
            )
        })
        .collect()
}

/// The files that differ from the signed subjects: missing or changed (in the signed
/// subjects' order), then added since.
fn subject_changes(statement: &Statement, now: &[Subject]) -> Vec<String> {
    let signed: std::collections::BTreeMap<&str, &str> = statement
        .subject
        .iter()
        .map(|s| (s.name.as_str(), s.digest.sha256.as_str()))
        .collect();
    let present: std::collections::BTreeMap<&str, &str> = now
        .iter()
        .map(|s| (s.name.as_str(), s.digest.sha256.as_str()))
        .collect();
    let mut problems = Vec::new();
    for (name, digest) in &signed {
        match present.get(name) {
            None => problems.push(format!("{name} is missing (it was attested)")),
            Some(d) if d != digest => problems.push(format!(
                "{name} changed since the run was attested (sha256 {}…, attested {}…)",
                &d[..12.min(d.len())],
                &digest[..12.min(digest.len())]
            )),
            Some(_) => {}
        }
    }
    for name in present.keys() {
        if !signed.contains_key(name) {
            problems.push(format!(
                "{} was added after the run was attested",
                crate::safe_fs::printable_name(name)
            ));
        }
    }
    problems
}

fn plain_relative(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\\')
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// The subjects in `sha256sum` format (`HEX  NAME` per line), as `actions/attest` takes them
/// in `subject-checksums`.
pub fn checksums(statement: &Statement) -> String {
    statement
        .subject
        .iter()
        .map(|s| format!("{}  {}\n", s.digest.sha256, s.name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            BASE64.encode(doc.as_ref())
        );
        SigningKey::from_pem(pem.as_bytes()).unwrap()
    }

    fn public_pem(key: &SigningKey) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&key.public_key().bytes);
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            BASE64.encode(der)
        )
    }

    #[test]
    fn pae_is_the_dsse_encoding() {
        // The DSSE specification's example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn a_signed_envelope_opens_with_the_public_key_only() {
        let key = key();
        let public = PublicKey::from_pem(public_pem(&key).as_bytes()).unwrap();
        assert_eq!(public.keyid(), key.keyid());
        let envelope = key.sign(PAYLOAD_TYPE, b"{\"a\":1}");
        assert_eq!(envelope.signatures[0].keyid, key.keyid());
        assert_eq!(public.open(&envelope).unwrap(), b"{\"a\":1}");

        let mut changed = envelope.clone();
        changed.payload = BASE64.encode(b"{\"a\":2}");
        assert!(public.open(&changed).unwrap_err().contains("changed"));
        let mut retyped = envelope.clone();
        retyped.payload_type = "text/plain".into();
        assert!(public.open(&retyped).is_err(), "the type is signed too");
        let other = PublicKey::from_pem(public_pem(&self::key()).as_bytes()).unwrap();
        assert!(other.open(&envelope).unwrap_err().contains("another key"));
    }

    #[test]
    fn keys_of_the_wrong_kind_say_what_to_do() {
        let key = key();
        let public = public_pem(&key);
        let err = SigningKey::from_pem(public.as_bytes()).unwrap_err();
        assert!(
            err.contains("a public key") && err.contains("openssl genpkey"),
            "{err}"
        );
        let err = SigningKey::from_pem(b"hello").unwrap_err();
        assert!(err.contains("not a PEM file"), "{err}");
        let err = SigningKey::from_pem(&[0x30, 0x82, 0xff, 0xfe]).unwrap_err();
        assert!(err.contains("binary"), "{err}");
        let err = SigningKey::from_pem(
            b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(err.contains("an RSA key"), "{err}");
        let err = SigningKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap_err();
        assert!(err.contains("cut short"), "{err}");
        // An X25519 key (same shape, another OID) is not an Ed25519 key.
        let x25519 = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VuBCIEIHBgJSkzrG56SpsOsmMsWgQKhyV624aaPszD0WtyTyZH\n-----END PRIVATE KEY-----\n";
        let err = SigningKey::from_pem(x25519.as_bytes()).unwrap_err();
        assert!(err.contains("another algorithm"), "{err}");
        let private = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let err = PublicKey::from_pem(private).unwrap_err();
        assert!(
            err.contains("a private key") && err.contains("-pubout"),
            "{err}"
        );
    }

    #[test]
    fn subject_names_stay_inside_the_run_directory() {
        assert!(plain_relative("artifacts/sre/plan.md"));
        for bad in ["", "../x", "/etc/passwd", "a/../../b", "a\\b", "./x"] {
            assert!(!plain_relative(bad), "{bad}");
        }
    }
}
