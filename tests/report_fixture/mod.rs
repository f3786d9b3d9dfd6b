//! FIXTURE: a hand-written `Report` standing in for a real run, so the report formats can
//! be tested without a model. Nothing here was produced by a model or by hatrack's run
//! logic; the verdicts are chosen to cover every case a format must show:
//! met / unmet / unknown, grounded and ungrounded evidence, an unparseable step, agreement
//! values (stable and unstable), an advisory (SHOULD) requirement, a truncated input, and
//! HTML-hostile text (`<script>`, `&`, quotes, backticks, pipes).
#![allow(dead_code)]

use hatrack::report::*;

pub const HOSTILE: &str = "<script>alert(\"pwned\")</script> & `rm -rf` | 'quoted'";

fn usage(prompt: u64, completion: u64) -> TokenUsage {
    TokenUsage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens: 0,
    }
}

#[allow(clippy::too_many_arguments)]
fn step(
    id: &str,
    kind: StepKind,
    name: &str,
    status: StepStatus,
    source: &str,
    attempts: u32,
    tokens: (u64, u64),
    duration_ms: u64,
) -> StepReport {
    StepReport {
        id: id.into(),
        kind,
        name: name.into(),
        model: if kind == StepKind::Hat {
            "SmolLM2-135M-Instruct".into()
        } else {
            "judge-model-7b".into()
        },
        status,
        attempts,
        usage: usage(tokens.0, tokens.1),
        duration_ms,
        cost: None,
        source: source.into(),
        summary: None,
        artifacts: vec![],
        errors: vec![],
        trail: vec![],
        tools: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn req(
    id: &str,
    kind: RequirementKind,
    level: &str,
    judged_by: &str,
    verdict: Verdict,
    claimed: Verdict,
    text: &str,
    finding: &str,
) -> RequirementReport {
    RequirementReport {
        id: id.into(),
        kind,
        level: level.into(),
        mandatory: level != "SHOULD" && level != "MAY",
        blocking: kind == RequirementKind::HatConstraint || (level != "SHOULD" && level != "MAY"),
        text: text.into(),
        source: format!(
            "hats/deployment/{}.md:{}",
            id.split('/').next().unwrap(),
            12
        ),
        judged_by: judged_by.into(),
        about: if kind == RequirementKind::HatConstraint {
            Subject::HatOutput
        } else {
            Subject::Repository
        },
        model: "judge-model-7b".into(),
        verdict,
        claimed,
        severity: None,
        finding: finding.into(),
        evidence: vec![],
        cause: None,
        note: None,
        agreement: None,
        label: None,
    }
}

fn evidence(source: &str, quote: &str, grounded: bool) -> EvidenceReport {
    EvidenceReport {
        source: source.into(),
        quote: quote.into(),
        grounded,
        repository_copy: None,
        line: None,
        found_in: grounded.then(|| {
            if source.starts_with("artifacts/") {
                SourceKind::Artifact {
                    hat: source.split('/').nth(1).unwrap_or_default().into(),
                }
            } else {
                SourceKind::Input
            }
        }),
        provenance: if !grounded {
            format!("ungrounded: the quote does not occur in {source}")
        } else if source.starts_with("artifacts/") {
            format!(
                "quoted from the {}'s artifact",
                source.split('/').nth(1).unwrap_or_default()
            )
        } else {
            "quoted from the repository".into()
        },
    }
}

fn reason(subject: &str, blocker: Blocker, message: &str) -> Reason {
    Reason {
        subject: subject.into(),
        blocker,
        message: message.into(),
    }
}

/// FIXTURE: the deployment stage, signal not met (2 unmet, 3 unknown), gate `external`.
pub fn sample_report() -> Report {
    use RequirementKind::*;
    use Verdict::*;

    let mut pe = step(
        "hat/pipeline-engineer",
        StepKind::Hat,
        "pipeline-engineer",
        StepStatus::Answered,
        "live",
        1,
        (4_210, 1_873),
        12_345,
    );
    pe.summary = Some("Wrote the deployment plan & the Airflow DAG config.".into());
    pe.artifacts = vec![ArtifactReport {
        path: "artifacts/pipeline-engineer/deploy-plan.md".into(),
        bytes: 2_048,
        sha256: "a".repeat(64),
    }];
    let mut sre = step(
        "hat/sre",
        StepKind::Hat,
        "sre",
        StepStatus::Answered,
        "replayed",
        2,
        (5_020, 2_210),
        9_870,
    );
    sre.artifacts = vec![ArtifactReport {
        path: "artifacts/sre/runbook.md".into(),
        bytes: 1_024,
        sha256: "b".repeat(64),
    }];
    let judge_pe = step(
        "judge/pipeline-engineer",
        StepKind::ConstraintJudge,
        "pipeline-engineer constraint judge",
        StepStatus::Answered,
        "live",
        1,
        (3_100, 640),
        4_200,
    );
    let judge_sre = step(
        "judge/sre",
        StepKind::ConstraintJudge,
        "sre constraint judge",
        StepStatus::Answered,
        "live",
        1,
        (3_300, 700),
        4_600,
    );
    let mut review = step(
        "review/reliability",
        StepKind::Review,
        "reliability",
        StepStatus::Unparseable,
        "live",
        3,
        (9_400, 3_100),
        31_002,
    );
    review.errors = vec![
        "/checks/0/verdict: \"maybe\" is not one of [\"pass\",\"fail\",\"unknown\"]".into(),
        "expected value at line 1 column 1".into(),
        "/checks: missing required property".into(),
    ];
    let signal = step(
        "signal",
        StepKind::Signal,
        "completion judge",
        StepStatus::Answered,
        "mixed",
        5,
        (11_000, 1_500),
        7_400,
    );

    let mut r1 = req(
        "pipeline-engineer/anti-pattern/1",
        HatConstraint,
        "MUST NOT",
        "judge/pipeline-engineer",
        Met,
        Met,
        "Deploying without checking the validation report",
        "The plan cites the validation report before deploying.",
    );
    r1.evidence = vec![evidence(
        "artifacts/pipeline-engineer/deploy-plan.md",
        "Step 1: confirm reports/validation-report.md shows 0 failed checks.",
        true,
    )];

    let mut r2 = req(
        "pipeline-engineer/anti-pattern/2",
        HatConstraint,
        "MUST NOT",
        "judge/pipeline-engineer",
        Unmet,
        Unmet,
        "Hardcoding credentials or connection strings in pipeline code",
        &format!("The DAG embeds a connection string: {HOSTILE}"),
    );
    r2.evidence = vec![evidence(
        "artifacts/pipeline-engineer/dags/orders.py",
        "conn = \"postgres://etl:hunter2@db:5432/orders\"  # <b>temporary</b> & quick",
        true,
    )];

    let mut r3 = req(
        "sre/anti-pattern/1",
        HatConstraint,
        "MUST NOT",
        "judge/sre",
        Unknown,
        Met,
        "Deploying without monitoring and alerting on pipeline freshness",
        "Freshness alerts are configured at 2x the SLA.",
    );
    r3.evidence = vec![evidence(
        "artifacts/sre/runbook.md",
        "freshness_alert: 2x SLA, pages #data-oncall",
        false,
    )];
    r3.note = Some(
        "ungrounded evidence: the quote does not occur in artifacts/sre/runbook.md; verdict downgraded from met to unknown"
            .into(),
    );

    let mut r4 = req(
        "reliability/check/1",
        ReviewCheck,
        "MUST",
        "review/reliability",
        Unknown,
        Unknown,
        "Verify that retry logic uses exponential backoff",
        "",
    );
    r4.severity = Some("high".into());
    r4.note = Some("review/reliability gave no schema-valid answer after 3 attempts".into());

    let mut r5 = req(
        "reliability/check/2",
        ReviewCheck,
        "SHOULD",
        "review/reliability",
        Unknown,
        Unknown,
        "Check that backfill runs are idempotent",
        "",
    );
    r5.severity = Some("medium".into());
    r5.note = Some("review/reliability gave no schema-valid answer after 3 attempts".into());

    let mut r6 = req(
        "signal/1",
        Signal,
        "implicit",
        "signal",
        Met,
        Met,
        "Pipeline deployed to production with monitoring active",
        "The runbook and the deploy plan together cover deployment and monitoring.",
    );
    r6.agreement = Some(Agreement {
        agree: 5,
        samples: 5,
        unstable: false,
    });

    let mut r7 = req(
        "signal/2",
        Signal,
        "MUST",
        "signal",
        Unmet,
        Unmet,
        "Alerting MUST be configured for SLA breaches & data-quality failures",
        "Only freshness is alerted on; data-quality failures have no alert.",
    );
    r7.agreement = Some(Agreement {
        agree: 3,
        samples: 5,
        unstable: true,
    });
    r7.evidence = vec![
        evidence(
            "artifacts/sre/runbook.md",
            "Alerts:\n- freshness (2x SLA)\n",
            true,
        ),
        evidence(
            "input:validation report",
            "quality alerts: none configured",
            false,
        ),
    ];

    Report {
        schema_version: SCHEMA_VERSION,
        hatrack_version: "0.1.0".into(),
        stage: StageInfo {
            name: "deployment".into(),
            studio: Some("data-pipeline".into()),
            title: "Deployment".into(),
            description: "Deploy the pipeline & set up monitoring".into(),
            gates: vec!["external".into()],
            definition_digest: format!("sha256:{}", "c".repeat(64)),
            hats: vec!["pipeline-engineer".into(), "sre".into()],
            review_agents: vec!["reliability".into()],
            fix_hats: Vec::new(),
            interpretation: None,
        },
        run: RunInfo {
            id: "2026-11-27T13-00-00Z".into(),
            model: "SmolLM2-135M-Instruct".into(),
            judge_model: "judge-model-7b".into(),
            record_mode: "once".into(),
            started_at: "2026-11-27T13:00:00Z".into(),
            prompt_digest: format!("sha256:{}", "d".repeat(64)),
            samples: 5,
            usage: usage(29_630, 8_683),
            duration_ms: 60_617,
            cost: None,
            policy: None,
        },
        outcome: Outcome {
            signal_met: false,
            exit_code: 1,
            summary: "2 mandatory requirements are unmet and 2 are unknown; the deployment is not ready."
                .into(),
            allow_unknown: false,
            allow_unstable: false,
            counts: VerdictCounts {
                met: 2,
                unmet: 2,
                unknown: 3,
                artifact_only: 0,
            },
            blocking_total: 8,
            reasons: vec![
                reason(
                    "pipeline-engineer/anti-pattern/2",
                    Blocker::Unmet {
                        level: "MUST NOT".into(),
                        cause: None,
                    },
                    "pipeline-engineer/anti-pattern/2 (MUST NOT) is unmet",
                ),
                reason(
                    "signal/2",
                    Blocker::Unmet {
                        level: "MUST".into(),
                        cause: None,
                    },
                    "signal/2 (MUST) is unmet",
                ),
                reason(
                    "sre/anti-pattern/1",
                    Blocker::Unknown {
                        level: "MUST NOT".into(),
                        cause: Some(Cause::Ungrounded { claimed: Met }),
                    },
                    "sre/anti-pattern/1 (MUST NOT) is unknown (ungrounded evidence)",
                ),
                reason(
                    "reliability/check/1",
                    Blocker::Unknown {
                        level: "MUST".into(),
                        cause: Some(Cause::NoAnswer {
                            step: "review/reliability".into(),
                        }),
                    },
                    "reliability/check/1 (MUST) is unknown (no answer)",
                ),
            ],
            human_approval_required: true,
            no_completion_signal: false,
        },
        steps: vec![pe, sre, judge_pe, judge_sre, review, signal],
        requirements: vec![r1, r2, r3, r4, r5, r6, r7],
        inputs: vec![
            InputReport {
                hat: "pipeline-engineer".into(),
                item: "Validation report".into(),
                bound_to: "workspace".into(),
                files: vec![InputFileReport {
                    path: "reports/validation-report.md".into(),
                    bytes: 412_000,
                    sha256: "e".repeat(64),
                    truncated: true,
                    shown_bytes: 64_000,
                }],
            },
            InputReport {
                hat: "pipeline-engineer".into(),
                item: "transformation code".into(),
                bound_to: "workspace".into(),
                files: vec![
                    InputFileReport {
                        path: "models/orders.sql".into(),
                        bytes: 1_800,
                        sha256: "f".repeat(64),
                        truncated: false,
                        shown_bytes: 1_800,
                    },
                    InputFileReport {
                        path: "models/customers.sql".into(),
                        bytes: 950,
                        sha256: "0".repeat(64),
                        truncated: false,
                        shown_bytes: 950,
                    },
                ],
            },
            InputReport {
                hat: "sre".into(),
                item: "Pipeline engineer's deployment".into(),
                bound_to: "hat:pipeline-engineer".into(),
                files: vec![InputFileReport {
                    path: "artifacts/pipeline-engineer/deploy-plan.md".into(),
                    bytes: 2_048,
                    sha256: "a".repeat(64),
                    truncated: false,
                    shown_bytes: 2_048,
                }],
            },
        ],
        warnings: vec![
            "input `Validation report` (reports/validation-report.md) truncated to 64 KiB of 412,000 bytes".into(),
            "review agent `security (from development)` not found: skipped".into(),
        ],
        checks: None,
    }
}

/// FIXTURE: the same stage with every requirement met and gate `auto`.
pub fn met_report() -> Report {
    let mut r = sample_report();
    for req in &mut r.requirements {
        req.verdict = Verdict::Met;
        req.claimed = Verdict::Met;
        req.note = None;
        for e in &mut req.evidence {
            e.grounded = true;
        }
    }
    for s in &mut r.steps {
        s.status = StepStatus::Answered;
        s.errors.clear();
    }
    r.stage.gates = vec!["auto".into()];
    r.outcome = Outcome {
        signal_met: true,
        exit_code: 0,
        summary: "Every requirement is met.".into(),
        allow_unknown: false,
        allow_unstable: false,
        blocking_total: 8,
        counts: VerdictCounts {
            met: 7,
            unmet: 0,
            unknown: 0,
            artifact_only: 0,
        },
        reasons: vec![],
        human_approval_required: false,
        no_completion_signal: false,
    };
    r
}
