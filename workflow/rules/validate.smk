# Validation report: per subject, its sessions' source checks and its shards' round-trip
# (which writes the preview rows from the same pass); the BIDS validator once; then
# validation/report.{json,html} and a target that fails the run (after the report is
# written) when a hard check failed.


include: "common.smk"
include: "validate_common.smk"


rule check_sources:
    input:
        unpack(subject_sources),
    output:
        directory(L.session_checks_dir("{sub}")),
    log:
        L.log("check_sources", "sub-{sub}"),
    benchmark:
        L.benchmark("check_sources", "sub-{sub}")
    conda:
        "../../envs/bids2hub.yaml"
    resources:
        mem_mb=lambda wildcards, attempt: 500 * attempt,
    params:
        manifest=L.manifest,
        sessions=source_check_args,
        fingerprint=subject_fingerprint,
    shell:
        "python -m bids2hub check-sources --manifest {params.manifest:q}"
        " --columns {input.columns:q} --subject {wildcards.sub} {params.sessions}"
        " > {log:q} 2>&1"


rule check_shards:
    input:
        unpack(read_back_sources),
    output:
        **read_back_outputs(),
    log:
        L.log("check_shards", "sub-{sub}"),
    benchmark:
        L.benchmark("check_shards", "sub-{sub}")
    conda:
        "../../envs/bids2hub.yaml"
    resources:
        mem_mb=shard_check_mem_mb,
    params:
        manifest=L.manifest,
        shards=read_back_args,
        height=SETUP.config["preview"]["height"],
    shell:
        "python -m bids2hub check-shards --manifest {params.manifest:q}"
        " --columns {input.columns:q} --subject {wildcards.sub} {params.shards}"
        " --height {params.height} > {log:q} 2>&1"


rule run_bids_validator:
    input:
        # Rewritten only when a file of the dataset was added, removed or changed.
        manifest=L.manifest,
    output:
        L.bids_validator,
    log:
        L.log("run_bids_validator"),
    benchmark:
        L.benchmark("run_bids_validator")
    conda:
        "../../envs/bids2hub.yaml"
    resources:
        mem_mb=4000,
    params:
        bids_dir=str(SETUP.bids_dir),
    shell:
        "python -m bids2hub bids-validator --bids-dir {params.bids_dir:q}"
        " --output {output:q} > {log:q} 2>&1"


checkpoint list_intact_sessions:
    input:
        all_session_checks,
    output:
        L.intact_sessions,
    log:
        L.log("list_intact_sessions"),
    benchmark:
        L.benchmark("list_intact_sessions")
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        manifest=L.manifest,
        sessions=lambda wildcards: VALIDATION.checks.sessions,
        subjects=SETUP.subjects_arg(),
    shell:
        "python -m bids2hub list-intact-sessions --manifest {params.manifest:q}"
        " --session-checks {params.sessions:q} {params.subjects} --output {output:q}"
        " > {log:q} 2>&1"


rule write_validation_report:
    input:
        sessions=all_session_checks,
        shards=round_trip_results,
        intact=L.intact_sessions,
        validator=L.bids_validator,
        columns=L.columns,
        segmentation=segmentation_plan,
        qc=segmentation_qc,
    output:
        json=L.report_json,
        html=L.report_html,
    log:
        L.log("write_validation_report"),
    benchmark:
        L.benchmark("write_validation_report")
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        manifest=L.manifest,
        sessions=lambda wildcards: VALIDATION.checks.sessions,
        shards=lambda wildcards: VALIDATION.checks.shards,
        subjects=SETUP.subjects_arg(),
        tolerance=VALIDATION.count_tolerance,
        tolerate=(
            "--tolerate-validator-errors"
            if VALIDATION.tolerate_validator_errors
            else ""
        ),
        segmentation=lambda wildcards, input: (
            f"--segmentation {shlex.quote(input.segmentation[0])}"
            if input.segmentation
            else ""
        )
        + (f" --qc {shlex.quote(input.qc[0])}" if input.qc else ""),
    shell:
        "python -m bids2hub validation-report --manifest {params.manifest:q}"
        " --columns {input.columns:q} --session-checks {params.sessions:q}"
        " --shard-checks {params.shards:q} --validator {input.validator:q} {params.subjects}"
        " --count-tolerance {params.tolerance} {params.tolerate} {params.segmentation}"
        " --json {output.json:q} --html {output.html:q} > {log:q} 2>&1"


rule check_validation:
    input:
        VALIDATION.report,
    output:
        VALIDATION.passed,
    log:
        L.log("check_validation"),
    benchmark:
        L.benchmark("check_validation")
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    shell:
        # The one line ("validation failed: N hard failure(s), see .../report.html")
        # goes to the console as well as to the log.
        "set -o pipefail; python -m bids2hub check-validation --report {input:q}"
        " --output {output:q} 2>&1 | tee {log:q}"
