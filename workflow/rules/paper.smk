# Paper artifacts under {out_dir}/paper/: Table 1, lesion volumes, figures,
# per-subject QC overlays, runtimes from the benchmark files, provenance.json.
# Tables and figures are attached to `snakemake --report` with captions from
# workflow/report/. The outputs of the other stages it waits for and hashes come from
# PAPER (bids2hub.paper.plan.PaperPlan), which reads them from their plans.


include: "paper_common.smk"


rule measure_lesion_volumes:
    input:
        manifest=L.manifest,
        experts=paper_experts,
        qc=[L.qc_table] if PAPER.predicted else [],
    output:
        L.lesion_volumes,
    log:
        L.log("measure_lesion_volumes"),
    benchmark:
        L.benchmark("measure_lesion_volumes")
    conda:
        "../../envs/bids2hub.yaml"
    params:
        subjects=SETUP.subjects_arg(),
        qc=lambda wildcards, input: (
            f"--qc {shlex.quote(input.qc[0])}" if input.qc else ""
        ),
    shell:
        "python -m bids2hub paper-volumes --manifest {input.manifest:q} {params.subjects}"
        " {params.qc} --output {output:q} > {log:q} 2>&1"


rule write_cohort_table:
    input:
        manifest=L.manifest,
        volumes=L.lesion_volumes,
        participants=[SETUP.participants_tsv()] if SETUP.participants_tsv() else [],
        description=str(SETUP.bids_description),
    output:
        tsv=report(
            L.cohort_tsv,
            caption="../report/cohort.rst",
            category="1. Cohort",
            labels={"table": "Table 1 (long format)"},
        ),
        md=L.cohort_md,
    log:
        L.log("write_cohort_table"),
    benchmark:
        L.benchmark("write_cohort_table")
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        subjects=SETUP.subjects_arg(),
        phenotype=json.dumps(PAPER.phenotype, sort_keys=True),
    shell:
        "python -m bids2hub paper-cohort --manifest {input.manifest:q} {params.subjects}"
        " --volumes {input.volumes:q} --phenotype {params.phenotype:q}"
        " --tsv {output.tsv:q} --md {output.md:q} > {log:q} 2>&1"


rule plot_sessions:
    input:
        manifest=L.manifest,
    output:
        png=report(
            PAPER.figure("sessions", "png"),
            caption="../report/sessions.rst",
            category="1. Cohort",
            labels={"figure": "sessions and modality coverage"},
        ),
        svg=PAPER.figure("sessions", "svg"),
    log:
        L.log("plot_sessions"),
    benchmark:
        L.benchmark("plot_sessions")
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        subjects=SETUP.subjects_arg(),
        stem=subpath(output.png, strip_suffix=".png"),
    shell:
        "python -m bids2hub paper-sessions --manifest {input.manifest:q} {params.subjects}"
        " --stem {params.stem:q} > {log:q} 2>&1"


rule plot_lesion_volumes:
    input:
        L.lesion_volumes,
    output:
        distribution=report(
            PAPER.figure("lesion_volumes", "png"),
            caption="../report/lesion_volumes.rst",
            category="2. Lesions",
            labels={"figure": "lesion volume distribution"},
        ),
        distribution_svg=PAPER.figure("lesion_volumes", "svg"),
        agreement=report(
            PAPER.figure("volume_agreement", "png"),
            caption="../report/volume_agreement.rst",
            category="2. Lesions",
            labels={"figure": "predicted vs expert, Dice"},
        ),
        agreement_svg=PAPER.figure("volume_agreement", "svg"),
    log:
        L.log("plot_lesion_volumes"),
    benchmark:
        L.benchmark("plot_lesion_volumes")
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        distribution=subpath(output.distribution, strip_suffix=".png"),
        agreement=subpath(output.agreement, strip_suffix=".png"),
    shell:
        "python -m bids2hub paper-volume-figures --volumes {input:q}"
        " --distribution {params.distribution:q} --agreement {params.agreement:q}"
        " > {log:q} 2>&1"


rule plot_lesion_overlap:
    input:
        volumes=L.lesion_volumes,
        predicted=list(PAPER.predicted.values()),
        experts=paper_experts,
    output:
        nifti=L.overlap_nifti,
        png=report(
            PAPER.figure("lesion_overlap", "png"),
            caption="../report/lesion_overlap.rst",
            category="2. Lesions",
            labels={"figure": "lesion overlap"},
        ),
        svg=PAPER.figure("lesion_overlap", "svg"),
    log:
        L.log("plot_lesion_overlap"),
    benchmark:
        L.benchmark("plot_lesion_overlap")
    conda:
        "../../envs/bids2hub.yaml"
    resources:
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
    params:
        out_dir=lambda wildcards: L.out,
        bids=str(SETUP.bids_dir),
        stem=subpath(output.png, strip_suffix=".png"),
    shell:
        "python -m bids2hub paper-overlap --volumes {input.volumes:q}"
        " --out-dir {params.out_dir:q} --bids-dir {params.bids:q}"
        " --nifti {output.nifti:q} --stem {params.stem:q} > {log:q} 2>&1"


rule plot_qc_overlay:
    input:
        unpack(paper_qc_inputs),
    output:
        report(
            PAPER.qc_overlay("{sub}"),
            caption="../report/qc_overlay.rst",
            category="3. Segmentation QC",
            labels={"subject": "sub-{sub}"},
        ),
    log:
        L.log("plot_qc_overlay", "sub-{sub}"),
    benchmark:
        L.benchmark("plot_qc_overlay", "sub-{sub}")
    conda:
        "../../envs/bids2hub.yaml"
    resources:
        mem_mb=lambda wildcards, attempt: 1000 * attempt,
    shell:
        "python -m bids2hub paper-qc-overlay --trace {input.trace:q} --mask {input.mask:q}"
        " --title sub-{wildcards.sub} --output {output:q} > {log:q} 2>&1"


rule summarize_runtimes:
    input:
        paper_upstream,
        PAPER.artifacts(),
    output:
        tsv=report(
            L.runtimes,
            caption="../report/runtimes.rst",
            category="4. Runtimes",
            labels={"table": "runtimes per rule"},
        ),
        png=report(
            PAPER.figure("runtimes", "png"),
            caption="../report/runtimes.rst",
            category="4. Runtimes",
            labels={"figure": "runtimes per rule"},
        ),
        svg=PAPER.figure("runtimes", "svg"),
    log:
        L.log("summarize_runtimes"),
    benchmark:
        L.benchmark("summarize_runtimes")
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        benchmarks=L.benchmarks_dir,
        stem=subpath(output.png, strip_suffix=".png"),
    shell:
        "python -m bids2hub paper-runtimes --benchmarks {params.benchmarks:q}"
        " --tsv {output.tsv:q} --stem {params.stem:q} > {log:q} 2>&1"


rule write_provenance:
    input:
        record=PAPER.provenance_inputs,
        manifest=L.manifest,
        hashed=paper_hashed,
        located=PAPER.located(),
        receipt=[PAPER.image_receipt] if PAPER.image_receipt else [],
        masks_description=[L.masks_description] if PAPER.predicted else [],
    output:
        report(
            L.provenance,
            caption="../report/provenance.rst",
            category="5. Provenance",
            labels={"file": os.path.basename(L.provenance)},
        ),
    log:
        L.log("write_provenance"),
    benchmark:
        L.benchmark("write_provenance")
    conda:
        "../../envs/bids2hub.yaml"
    resources:
        mem_mb=1000,
    params:
        out_dir=lambda wildcards: L.out,
        git=lambda wildcards: paper_git(),
        masks_description=lambda wildcards, input: (
            input.masks_description[0] if input.masks_description else ""
        ),
        receipt=lambda wildcards, input: input.receipt[0] if input.receipt else "",
        cache=PAPER.hash_cache,
    shell:
        "python -m bids2hub paper-provenance --manifest {input.manifest:q}"
        " --inputs {input.record:q} --out-dir {params.out_dir:q}"
        " --git-commit={params.git:q} --masks-description={params.masks_description:q}"
        " --receipt={params.receipt:q} --hash-cache {params.cache:q}"
        " --output {output:q} > {log:q} 2>&1"
