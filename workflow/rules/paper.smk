# Paper artifacts under {out_dir}/paper/: Table 1, lesion volumes, figures,
# per-subject QC overlays, runtimes from the benchmark files, provenance.json.
# Tables and figures are attached to `snakemake --report` with captions from
# workflow/report/. Include after validate.smk and hub.smk (it hashes their outputs).


include: "paper_common.smk"


rule measure_lesion_volumes:
    input:
        manifest=str(SETUP.manifest_path),
        experts=paper_experts,
        qc=[str(SETUP.qc_path)] if PAPER.predicted else [],
    output:
        PAPER.path("lesion_volumes.tsv"),
    log:
        f"{OUT}/logs/measure_lesion_volumes/measure_lesion_volumes.log",
    benchmark:
        f"{OUT}/benchmarks/measure_lesion_volumes/measure_lesion_volumes.tsv"
    conda:
        "../../envs/bids2hub.yaml"
    params:
        subjects=PAPER_SUBJECTS,
        qc=lambda wildcards, input: (
            f"--qc {shlex.quote(input.qc[0])}" if input.qc else ""
        ),
    shell:
        "python -m bids2hub paper-volumes --manifest {input.manifest:q} {params.subjects}"
        " {params.qc} --output {output:q} > {log:q} 2>&1"


rule write_cohort_table:
    input:
        manifest=str(SETUP.manifest_path),
        volumes=PAPER.path("lesion_volumes.tsv"),
        participants=[SETUP.participants_tsv()] if SETUP.participants_tsv() else [],
        description=f"{SETUP.bids_dir}/dataset_description.json",
    output:
        tsv=report(
            PAPER.path("cohort.tsv"),
            caption="../report/cohort.rst",
            category="1. Cohort",
            labels={"table": "Table 1 (long format)"},
        ),
        md=PAPER.path("cohort.md"),
    log:
        f"{OUT}/logs/write_cohort_table/write_cohort_table.log",
    benchmark:
        f"{OUT}/benchmarks/write_cohort_table/write_cohort_table.tsv"
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        subjects=PAPER_SUBJECTS,
        phenotype=json.dumps(PAPER.phenotype, sort_keys=True),
    shell:
        "python -m bids2hub paper-cohort --manifest {input.manifest:q} {params.subjects}"
        " --volumes {input.volumes:q} --phenotype {params.phenotype:q}"
        " --tsv {output.tsv:q} --md {output.md:q} > {log:q} 2>&1"


rule plot_sessions:
    input:
        manifest=str(SETUP.manifest_path),
    output:
        png=report(
            PAPER.figure("sessions", "png"),
            caption="../report/sessions.rst",
            category="1. Cohort",
            labels={"figure": "sessions and modality coverage"},
        ),
        svg=PAPER.figure("sessions", "svg"),
    log:
        f"{OUT}/logs/plot_sessions/plot_sessions.log",
    benchmark:
        f"{OUT}/benchmarks/plot_sessions/plot_sessions.tsv"
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        subjects=PAPER_SUBJECTS,
        stem=subpath(output.png, strip_suffix=".png"),
    shell:
        "python -m bids2hub paper-sessions --manifest {input.manifest:q} {params.subjects}"
        " --stem {params.stem:q} > {log:q} 2>&1"


rule plot_lesion_volumes:
    input:
        PAPER.path("lesion_volumes.tsv"),
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
        f"{OUT}/logs/plot_lesion_volumes/plot_lesion_volumes.log",
    benchmark:
        f"{OUT}/benchmarks/plot_lesion_volumes/plot_lesion_volumes.tsv"
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
        volumes=PAPER.path("lesion_volumes.tsv"),
        predicted=list(PAPER.predicted.values()),
        experts=paper_experts,
    output:
        nifti=PAPER.path("lesion_overlap.nii.gz"),
        png=report(
            PAPER.figure("lesion_overlap", "png"),
            caption="../report/lesion_overlap.rst",
            category="2. Lesions",
            labels={"figure": "lesion overlap"},
        ),
        svg=PAPER.figure("lesion_overlap", "svg"),
    log:
        f"{OUT}/logs/plot_lesion_overlap/plot_lesion_overlap.log",
    benchmark:
        f"{OUT}/benchmarks/plot_lesion_overlap/plot_lesion_overlap.tsv"
    conda:
        "../../envs/bids2hub.yaml"
    resources:
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
    params:
        out_dir=paper_out_dir,
        bids=bids_root,
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
            f"{PAPER_DIR}/qc/sub-{{sub}}.png",
            caption="../report/qc_overlay.rst",
            category="3. Segmentation QC",
            labels={"subject": "sub-{sub}"},
        ),
    log:
        f"{OUT}/logs/plot_qc_overlay/sub-{{sub}}.log",
    benchmark:
        f"{OUT}/benchmarks/plot_qc_overlay/sub-{{sub}}.tsv"
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
            PAPER.path("runtimes.tsv"),
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
        f"{OUT}/logs/summarize_runtimes/summarize_runtimes.log",
    benchmark:
        f"{OUT}/benchmarks/summarize_runtimes/summarize_runtimes.tsv"
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        benchmarks=f"{OUT}/benchmarks",
        stem=subpath(output.png, strip_suffix=".png"),
    shell:
        "python -m bids2hub paper-runtimes --benchmarks {params.benchmarks:q}"
        " --tsv {output.tsv:q} --stem {params.stem:q} > {log:q} 2>&1"


rule write_provenance:
    input:
        record=PAPER.provenance_inputs,
        manifest=str(SETUP.manifest_path),
        hashed=paper_hashed,
        located=PAPER_LOCATED,
        receipt=[DEEPISLES_RECEIPT] if SEGMENT_BACKEND == "deepisles" else [],
        masks_description=[HUB.masks_description] if PAPER.predicted else [],
    output:
        report(
            PAPER.path("provenance.json"),
            caption="../report/provenance.rst",
            category="5. Provenance",
            labels={"file": "provenance.json"},
        ),
    log:
        f"{OUT}/logs/write_provenance/write_provenance.log",
    benchmark:
        f"{OUT}/benchmarks/write_provenance/write_provenance.tsv"
    conda:
        "../../envs/bids2hub.yaml"
    resources:
        mem_mb=1000,
    params:
        out_dir=paper_out_dir,
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
