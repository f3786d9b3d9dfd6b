//! Signed runs through the binary: `attest` writes a DSSE envelope over an in-toto statement
//! of every file of a run directory, `verify` checks it and names the file that changed,
//! `replay --require-signature` refuses what does not verify, and an independent DSSE
//! implementation (Python's `cryptography`) accepts the signature.
//!
//! The run directory is the shipped `transcripts/orders-pipeline`, copied under its own
//! name (a replay names its run after its directory) into a temporary directory: it replays
//! offline from its snapshot.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::Test;

const ENVELOPE: &str = "attestation.intoto.jsonl";

/// Copies the shipped transcript to `dir/orders-pipeline`.
fn shipped_run(dir: &Path) -> PathBuf {
    let from = support::repo_root().join("transcripts/orders-pipeline");
    let to = dir.join("orders-pipeline");
    for entry in walkdir::WalkDir::new(&from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(&from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
    to
}

/// An Ed25519 key pair as PEM files, `(private, public)`: written by openssl as a user would
/// (`openssl genpkey -algorithm ed25519`, `openssl pkey -pubout`), or, where openssl is
/// missing, the same PKCS#8 / SubjectPublicKeyInfo documents built with ring.
fn keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let openssl = |args: &[&str]| Command::new("openssl").args(args).status();
    let made = openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        private.to_str().unwrap(),
    ])
    .is_ok_and(|s| s.success())
        && openssl(&[
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ])
        .is_ok_and(|s| s.success());
    if !made {
        use base64::Engine;
        use ring::signature::KeyPair;
        let b64 = base64::engine::general_purpose::STANDARD;
        let rng = ring::rand::SystemRandom::new();
        let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        let pem = |label: &str, der: &[u8]| {
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                b64.encode(der)
            )
        };
        std::fs::write(&private, pem("PRIVATE KEY", doc.as_ref())).unwrap();
        std::fs::write(&public, pem("PUBLIC KEY", &spki)).unwrap();
    }
    (private, public)
}

fn attest(run: &Path, key: &Path) -> Test {
    Test::new().arg("attest").arg(run).arg("--key").arg(key)
}

fn verify(run: &Path, key: &Path) -> Test {
    Test::new().arg("verify").arg(run).arg("--key").arg(key)
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn envelope(run: &Path) -> Value {
    let text = std::fs::read_to_string(run.join(ENVELOPE)).unwrap();
    assert_eq!(text.lines().count(), 1, "one envelope, one line: {text}");
    serde_json::from_str(&text).unwrap()
}

fn statement(run: &Path) -> Value {
    use base64::Engine;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(envelope(run)["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// Every file of the run directory but the attestation, as `/`-separated relative names.
fn files(run: &Path) -> Vec<String> {
    let mut names: Vec<String> = walkdir::WalkDir::new(run)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(run)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .filter(|n| n != ENVELOPE)
        .collect();
    names.sort();
    names
}

/// Changes one byte of `path` (the middle one: a letter for another), returning the original.
fn change_one_byte(path: &Path) -> Vec<u8> {
    let original = std::fs::read(path).unwrap();
    let mut bytes = original.clone();
    let at = (bytes.len() / 2..bytes.len())
        .find(|&i| bytes[i].is_ascii_alphanumeric())
        .unwrap();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(path, bytes).unwrap();
    original
}

#[test]
fn a_signed_run_verifies_and_its_statement_lists_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    let run = shipped_run(tmp.path());
    let (key, public) = keys(tmp.path(), "signer");
    let count = files(&run).len();
    let out = attest(&run, &key)
        .stdout_has(format!("signed {count} file(s)"))
        .stdout_has("gate: not met (exit 1); predicate type https://hatrack.dev/attestation/run/v1")
        .run();
    assert!(out.stdout.contains(ENVELOPE), "{}", out.stdout);

    let envelope = envelope(&run);
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
    let signatures = envelope["signatures"].as_array().unwrap();
    assert_eq!(signatures.len(), 1);
    assert_eq!(signatures[0]["keyid"].as_str().unwrap().len(), 64);

    let statement = statement(&run);
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        statement["predicateType"],
        "https://hatrack.dev/attestation/run/v1"
    );
    let subjects = statement["subject"].as_array().unwrap();
    let names: Vec<&str> = subjects
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, files(&run), "every file, sorted, by relative name");
    for s in subjects {
        let bytes = std::fs::read(run.join(s["name"].as_str().unwrap())).unwrap();
        use sha2::Digest;
        assert_eq!(
            s["digest"]["sha256"].as_str().unwrap(),
            hex::encode(sha2::Sha256::digest(&bytes))
        );
    }
    let predicate = &statement["predicate"];
    let report = json(&run.join("report.json"));
    let recorded = json(&run.join("run.json"));
    assert_eq!(predicate["gate"]["outcome"], "not met");
    assert_eq!(
        predicate["gate"]["exit_code"],
        report["outcome"]["exit_code"]
    );
    assert_eq!(
        predicate["gate"]["signal_met"],
        report["outcome"]["signal_met"]
    );
    assert_eq!(
        predicate["stage"]["definition_digest"],
        recorded["stage"]["definition_digest"]
    );
    assert_eq!(predicate["model"], recorded["model"]);
    assert_eq!(
        predicate["models"],
        serde_json::json!(["smollm2-135m-instruct"])
    );

    verify(&run, &public)
        .stdout_has(format!("verified: {count} file(s) signed by keyid"))
        .stdout_has("gate not met (exit 1)")
        .run();
    Test::new()
        .args(["verify", "--quiet"])
        .arg(&run)
        .arg("--key")
        .arg(&public)
        .stdout("")
        .run();
    // Never a private key in what was written or printed.
    let secret: String = std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let written = std::fs::read_to_string(run.join(ENVELOPE)).unwrap();
    assert!(!written.contains(&secret) && !out.stdout.contains(&secret));
}

#[test]
fn one_changed_byte_fails_verification_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let run = shipped_run(tmp.path());
    let (key, public) = keys(tmp.path(), "signer");
    attest(&run, &key).run();

    for (file, says) in [
        (
            "exchanges.jsonl",
            "exchanges.jsonl changed since the run was attested",
        ),
        (
            "report.json",
            "report.json changed since the run was attested",
        ),
        ("snapshot/manifest.json", "snapshot/manifest.json changed"),
        ("report.md", "report.md changed"),
    ] {
        let path = run.join(file);
        let original = change_one_byte(&path);
        let out = verify(&run, &public)
            .status(2)
            .stderr_has("does not verify")
            .stderr_has(says)
            .run();
        assert_eq!(
            out.stderr.matches("changed since").count(),
            1,
            "{}",
            out.stderr
        );
        std::fs::write(&path, original).unwrap();
    }
    verify(&run, &public).run();

    // The envelope itself: its signed payload, and its signature.
    let path = run.join(ENVELOPE);
    let original = std::fs::read_to_string(&path).unwrap();
    let mut value: Value = serde_json::from_str(&original).unwrap();
    let payload = value["payload"].as_str().unwrap().to_string();
    let mut changed = payload.clone().into_bytes();
    let at = changed.len() / 2;
    changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
    value["payload"] = Value::String(String::from_utf8(changed).unwrap());
    std::fs::write(&path, format!("{value}\n")).unwrap();
    verify(&run, &public)
        .status(2)
        .stderr_has("attestation.intoto.jsonl: the signature does not match its content")
        .run();
    std::fs::write(&path, &original).unwrap();
    change_one_byte(&path);
    verify(&run, &public)
        .status(2)
        .stderr_has("attestation.intoto.jsonl")
        .run();
    std::fs::write(&path, &original).unwrap();

    // A file added, a file removed.
    std::fs::create_dir_all(run.join("artifacts")).unwrap();
    std::fs::write(run.join("artifacts").join("late.md"), "added after signing").unwrap();
    verify(&run, &public)
        .status(2)
        .stderr_has("artifacts/late.md was added after the run was attested")
        .run();
    std::fs::remove_file(run.join("artifacts").join("late.md")).unwrap();
    let sarif = std::fs::read(run.join("report.sarif")).unwrap();
    std::fs::remove_file(run.join("report.sarif")).unwrap();
    verify(&run, &public)
        .status(2)
        .stderr_has("report.sarif is missing")
        .run();
    std::fs::write(run.join("report.sarif"), sarif).unwrap();
    verify(&run, &public).run();

    // A signed file swapped for a FIFO is refused at once (never waited on), named.
    #[cfg(unix)]
    {
        let md = run.join("report.md");
        let kept = std::fs::read(&md).unwrap();
        std::fs::remove_file(&md).unwrap();
        let c = std::ffi::CString::new(md.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let started = std::time::Instant::now();
        verify(&run, &public)
            .status(2)
            .stderr_has("report.md")
            .run();
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        std::fs::remove_file(&md).unwrap();
        std::fs::write(&md, kept).unwrap();
        verify(&run, &public).run();
    }

    // Another signer's key, and no signature at all.
    let (_, stranger) = keys(tmp.path(), "stranger");
    verify(&run, &stranger)
        .status(2)
        .stderr_has("no signature by this key")
        .run();
    std::fs::remove_file(&path).unwrap();
    verify(&run, &public)
        .status(2)
        .stderr_has("not signed (no attestation.intoto.jsonl)")
        .run();
}

/// Python's `cryptography` verifies the envelope as DSSE defines it (PAE over the payload
/// type and body, Ed25519), the keyid as documented, and each subject's digest — and rejects
/// the envelope once its payload changes. Under CI=true a missing Python fails the test.
#[test]
fn the_signature_verifies_with_an_independent_dsse_implementation() {
    let probe = Command::new("python3")
        .args(["-c", "import cryptography"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        let message = "python3 with the `cryptography` package is needed to check the signature independently";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true: {message}");
        }
        eprintln!("skipped: {message}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = shipped_run(tmp.path());
    let (key, public) = keys(tmp.path(), "signer");
    attest(&run, &key).run();
    let script = r#"
import base64, hashlib, json, os, sys
from cryptography.hazmat.primitives.serialization import load_pem_public_key, Encoding, PublicFormat
run, pub = sys.argv[1], sys.argv[2]
env = json.loads(open(os.path.join(run, "attestation.intoto.jsonl"), "rb").read())
body = base64.b64decode(env["payload"])
ptype = env["payloadType"].encode()
pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(body), body)
key = load_pem_public_key(open(pub, "rb").read())
raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
sig = env["signatures"][0]
assert sig["keyid"] == hashlib.sha256(raw).hexdigest(), "keyid"
key.verify(base64.b64decode(sig["sig"]), pae)
statement = json.loads(body)
assert statement["_type"] == "https://in-toto.io/Statement/v1"
for s in statement["subject"]:
    with open(os.path.join(run, s["name"]), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == s["digest"]["sha256"], s["name"]
print("verified", len(statement["subject"]), statement["predicate"]["gate"]["outcome"])
"#;
    let python = |run: &Path| {
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(run)
            .arg(&public)
            .output()
            .unwrap()
    };
    let out = python(&run);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!("verified {} not met", files(&run).len())
    );

    // The same envelope with another payload (an extra subject) does not verify there either.
    let mut value = envelope(&run);
    let mut statement = statement(&run);
    statement["subject"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "run.json", "digest": {"sha256": "00"}}));
    use base64::Engine;
    value["payload"] =
        Value::String(base64::engine::general_purpose::STANDARD.encode(statement.to_string()));
    std::fs::write(run.join(ENVELOPE), format!("{value}\n")).unwrap();
    let out = python(&run);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("InvalidSignature"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn replay_with_a_required_signature_refuses_unsigned_and_tampered_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let run = shipped_run(tmp.path());
    let (key, public) = keys(tmp.path(), "signer");
    let replay = || {
        Test::new()
            .args(["replay", "--quiet"])
            .arg(&run)
            .arg("--require-signature")
            .arg(&public)
    };
    let report = std::fs::read(run.join("report.json")).unwrap();
    replay()
        .status(2)
        .stderr_has("refusing to replay")
        .stderr_has("not signed (no attestation.intoto.jsonl)")
        .run();

    attest(&run, &key).run();
    // Signed: it replays, with the recorded gate (not met), and rewrites the same reports,
    // so the run still verifies afterwards.
    replay().status(1).run();
    assert_eq!(std::fs::read(run.join("report.json")).unwrap(), report);
    verify(&run, &public).run();

    // Tampered: refused before anything replays (the reports are not rewritten).
    let exchanges = run.join("exchanges.jsonl");
    let original = change_one_byte(&exchanges);
    let html = run.join("report.html");
    std::fs::write(&html, "left as it was").unwrap();
    replay()
        .status(2)
        .stderr_has("refusing to replay")
        .stderr_has("exchanges.jsonl changed since the run was attested")
        .run();
    assert_eq!(std::fs::read_to_string(&html).unwrap(), "left as it was");
    std::fs::write(&exchanges, original).unwrap();

    // A batch directory is not one signed run.
    let batch = tmp.path().join("batch");
    std::fs::create_dir_all(&batch).unwrap();
    std::fs::write(batch.join("batch.json"), "{}").unwrap();
    Test::new()
        .arg("replay")
        .arg(&batch)
        .arg("--require-signature")
        .arg(&public)
        .status(2)
        .stderr_has("a batch directory, but --require-signature checks one signed run directory")
        .run();
}

#[test]
fn key_problems_name_the_file_and_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let run = shipped_run(tmp.path());
    let (key, public) = keys(tmp.path(), "signer");
    let missing = tmp.path().join("nowhere.pem");
    attest(&run, &missing)
        .status(2)
        .stderr_has("nowhere.pem: cannot read the key")
        .stderr_has("openssl genpkey -algorithm ed25519 -out key.pem")
        .run();
    let text = tmp.path().join("notes.txt");
    std::fs::write(&text, "not a key\n").unwrap();
    attest(&run, &text)
        .status(2)
        .stderr_has("notes.txt: not a PEM file")
        .run();
    attest(&run, &public)
        .status(2)
        .stderr_has("signer.pub.pem: a public key, but signing needs the private key")
        .run();
    verify(&run, &key)
        .status(2)
        .stderr_has("signer.pem: a private key, but verifying takes the public key")
        .stderr_has("-pubout")
        .run();
    // A key of another algorithm (X25519 has Ed25519's shape, not its OID).
    let x25519 = tmp.path().join("x25519.pem");
    std::fs::write(
        &x25519,
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VuBCIEIAD7sFSBI6v+1wMiZ5083VVD+Vk3AJTbJGmN28mrWRFp\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    attest(&run, &x25519)
        .status(2)
        .stderr_has("x25519.pem: a private key of another algorithm, not Ed25519")
        .run();
    // Nothing was signed by any of these.
    assert!(!run.join(ENVELOPE).exists());
    // Not a run directory.
    attest(tmp.path(), &key)
        .status(2)
        .stderr_has("not a run directory (no run.json)")
        .run();
}

/// Keyless signing on GitHub Actions: the predicate and the subjects as `actions/attest`
/// takes them (`predicate-path`, `subject-checksums` in sha256sum format), no key needed.
#[test]
fn the_predicate_and_subjects_are_written_for_other_signers() {
    let tmp = tempfile::tempdir().unwrap();
    let run = shipped_run(tmp.path());
    let predicate = tmp.path().join("out/predicate.json");
    let subjects = tmp.path().join("out/subjects.sha256");
    Test::new()
        .arg("attest")
        .arg(&run)
        .arg("--predicate-out")
        .arg(&predicate)
        .arg("--subjects-out")
        .arg(&subjects)
        .stdout_has("predicate type https://hatrack.dev/attestation/run/v1")
        .run();
    assert!(!run.join(ENVELOPE).exists(), "nothing signed without a key");
    let value = json(&predicate);
    assert_eq!(value["gate"]["outcome"], "not met");
    assert_eq!(value["stage"]["name"], "deployment");
    let listed = std::fs::read_to_string(&subjects).unwrap();
    let names: Vec<&str> = listed
        .lines()
        .map(|l| {
            let (digest, name) = l.split_once("  ").unwrap();
            use sha2::Digest;
            let bytes = std::fs::read(run.join(name)).unwrap();
            assert_eq!(digest, hex::encode(sha2::Sha256::digest(&bytes)), "{name}");
            name
        })
        .collect();
    assert_eq!(names, files(&run));
    // Such a file inside the run directory would be an unsigned file there: refused.
    Test::new()
        .arg("attest")
        .arg(&run)
        .arg("--predicate-out")
        .arg(run.join("predicate.json"))
        .status(2)
        .stderr_has("inside the run directory")
        .run();
    // Neither a key nor an output: clap says what is needed.
    Test::new()
        .arg("attest")
        .arg(&run)
        .status(2)
        .stderr_has("--key")
        .run();
}

/// What the action's "Run hatrack" and "Gate" steps do, run with bash as the runner would:
/// the step's exit code, its outputs, and what it printed.
struct ActionRun {
    gate_exit: i32,
    outputs: String,
    stdout: String,
}

fn action_step(name: &str) -> String {
    let action: Value = serde_norway::from_str(
        &std::fs::read_to_string(support::repo_root().join("action.yml")).unwrap(),
    )
    .unwrap();
    action["runs"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .and_then(|s| s["run"].as_str())
        .unwrap_or_else(|| panic!("action.yml has a step {name:?}"))
        .to_string()
}

fn run_action(tmp: &Path, transcript: &Path, public_key: &str) -> ActionRun {
    let bin = Path::new(env!("CARGO_BIN_EXE_hatrack")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let outputs = tmp.join("github-output");
    std::fs::write(&outputs, "").unwrap();
    let run = Command::new("bash")
        .args(["-e", "-c", &action_step("Run hatrack")])
        .env("PATH", &path)
        .env("RUNNER_TEMP", tmp)
        .env("GITHUB_OUTPUT", &outputs)
        .env("HATRACK_WORKSPACE", ".")
        .env("HATRACK_ARGS", "--quiet")
        .env("HATRACK_REPLAY", transcript)
        .env("HATRACK_PUBLIC_KEY", public_key)
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .unwrap();
    assert!(run.status.success(), "the run step itself always succeeds");
    let outputs = std::fs::read_to_string(&outputs).unwrap();
    let output = |key: &str| {
        outputs
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_default()
            .to_string()
    };
    let gate = Command::new("bash")
        .args(["-e", "-c", &action_step("Gate")])
        .env("CODE", output("exit-code"))
        .env("GATES", output("gates"))
        .env("FAIL_ON_GATE", "true")
        .status()
        .unwrap();
    ActionRun {
        gate_exit: gate.code().unwrap(),
        outputs,
        stdout: String::from_utf8_lossy(&run.stdout).into_owned(),
    }
}

/// The GitHub Action: a transcript replay gates only when it verifies against `public-key`;
/// without one it is informational (a pull request can edit a committed transcript), and
/// with one an unsigned or changed transcript fails the step.
#[test]
fn the_action_gates_on_a_replayed_transcript_only_when_it_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let run = shipped_run(tmp.path());
    let (key, public) = keys(tmp.path(), "signer");
    let public = std::fs::read_to_string(public).unwrap();

    let unverified = run_action(tmp.path(), &run, "");
    assert!(
        unverified.outputs.contains("exit-code=1\n"),
        "{}",
        unverified.outputs
    );
    assert!(unverified.outputs.contains("gates=false\n"));
    assert!(
        unverified.stdout.contains("::warning title=hatrack::")
            && unverified.stdout.contains("informational"),
        "{}",
        unverified.stdout
    );
    assert_eq!(unverified.gate_exit, 0, "not met, but it does not gate");

    let unsigned = run_action(tmp.path(), &run, &public);
    assert!(
        unsigned.outputs.contains("exit-code=2\n"),
        "{}",
        unsigned.outputs
    );
    assert_eq!(unsigned.gate_exit, 2);

    attest(&run, &key).run();
    let signed = run_action(tmp.path(), &run, &public);
    assert!(
        signed.outputs.contains("exit-code=1\n") && signed.outputs.contains("gates=true\n"),
        "{}",
        signed.outputs
    );
    assert_eq!(signed.gate_exit, 1, "a verified replay gates");

    change_one_byte(&run.join("exchanges.jsonl"));
    let tampered = run_action(tmp.path(), &run, &public);
    assert!(
        tampered.outputs.contains("exit-code=2\n"),
        "{}",
        tampered.outputs
    );
    assert_eq!(tampered.gate_exit, 2);
}
