# Validation report: per-session source checks, per-shard round-trip, the BIDS
# validator once, then validation/report.{json,html} and a target that fails
# the run (after the report is written) when a hard check failed.


include: "validate_common.smk"


rule check_session:
    input:
        unpack(shard_sources),
    output:
        f"{VALIDATION}/sessions/sub-{{sub}}/{{shard}}.json",
    log:
        f"{OUT}/logs/check_session/sub-{{sub}}/{{shard}}.log",
    benchmark:
        f"{OUT}/benchmarks/check_session/sub-{{sub}}/{{shard}}.tsv"
    conda:
        "../../envs/bids2hub.yaml"
    resources:
        mem_mb=lambda wildcards, attempt: 500 * attempt,
    params:
        manifest=str(SETUP.manifest_path),
        session=shard_session,
        fingerprint=shard_fingerprint,
    shell:
        "python -m bids2hub check-session --manifest {params.manifest:q}"
        " --columns {input.columns:q} --subject {wildcards.sub}"
        " --session={params.session:q} --output {output:q} > {log:q} 2>&1"


rule check_shard:
    input:
        shard=f"{OUT}/hub/data/sub-{{sub}}/{{shard}}.parquet",
        session=f"{VALIDATION}/sessions/sub-{{sub}}/{{shard}}.json",
        columns=str(SETUP.columns_path),
    output:
        f"{VALIDATION}/shards/sub-{{sub}}/{{shard}}.json",
    log:
        f"{OUT}/logs/check_shard/sub-{{sub}}/{{shard}}.log",
    benchmark:
        f"{OUT}/benchmarks/check_shard/sub-{{sub}}/{{shard}}.tsv"
    conda:
        "../../envs/bids2hub.yaml"
    resources:
        mem_mb=shard_check_mem_mb,
    params:
        manifest=str(SETUP.manifest_path),
        session=shard_session,
    shell:
        "python -m bids2hub check-shard --manifest {params.manifest:q}"
        " --columns {input.columns:q} --subject {wildcards.sub}"
        " --session={params.session:q} --shard {input.shard:q}"
        " --session-check {input.session:q} --output {output:q} > {log:q} 2>&1"


rule run_bids_validator:
    input:
        # Rewritten only when a file of the dataset was added, removed or changed.
        manifest=str(SETUP.manifest_path),
    output:
        f"{VALIDATION}/bids-validator.json",
    log:
        f"{OUT}/logs/run_bids_validator/run_bids_validator.log",
    benchmark:
        f"{OUT}/benchmarks/run_bids_validator/run_bids_validator.tsv"
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
        f"{VALIDATION}/intact-sessions.json",
    log:
        f"{OUT}/logs/list_intact_sessions/list_intact_sessions.log",
    benchmark:
        f"{OUT}/benchmarks/list_intact_sessions/list_intact_sessions.tsv"
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        manifest=str(SETUP.manifest_path),
        out_dir=out_dir_of_output,
        subjects=validation_subjects_arg(),
    shell:
        "python -m bids2hub list-intact-sessions --manifest {params.manifest:q}"
        " --out-dir {params.out_dir:q} {params.subjects} --output {output:q} > {log:q} 2>&1"


rule write_validation_report:
    input:
        sessions=all_session_checks,
        shards=round_trip_results,
        intact=f"{VALIDATION}/intact-sessions.json",
        validator=f"{VALIDATION}/bids-validator.json",
        columns=str(SETUP.columns_path),
        segmentation=segmentation_plan,
        qc=segmentation_qc,
    output:
        json=f"{VALIDATION}/report.json",
        html=f"{VALIDATION}/report.html",
    log:
        f"{OUT}/logs/write_validation_report/write_validation_report.log",
    benchmark:
        f"{OUT}/benchmarks/write_validation_report/write_validation_report.tsv"
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        manifest=str(SETUP.manifest_path),
        out_dir=out_dir_of_output,
        subjects=validation_subjects_arg(),
        tolerance=SETUP.config["validation"]["count_tolerance"],
        tolerate=(
            "--tolerate-validator-errors"
            if SETUP.config["validation"]["tolerate_validator_errors"]
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
        " --columns {input.columns:q} --out-dir {params.out_dir:q} {params.subjects}"
        " --count-tolerance {params.tolerance} {params.tolerate} {params.segmentation}"
        " --json {output.json:q} --html {output.html:q} > {log:q} 2>&1"


rule check_validation:
    input:
        f"{VALIDATION}/report.json",
    output:
        f"{VALIDATION}/passed",
    log:
        f"{OUT}/logs/check_validation/check_validation.log",
    benchmark:
        f"{OUT}/benchmarks/check_validation/check_validation.tsv"
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    shell:
        # The one line ("validation failed: N hard failure(s), see .../report.html")
        # goes to the console as well as to the log.
        "set -o pipefail; python -m bids2hub check-validation --report {input:q}"
        " --output {output:q} 2>&1 | tee {log:q}"
