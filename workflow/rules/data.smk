# Raw scan -> contract report -> canonical NPZ.


rule validate:
    input:
        raw="resources/{dataset}.npz",
        script="scripts/validate.py",
        sources=sources("scripts/validate.py"),
    output:
        "results/validated/{dataset}.json",
    log:
        "logs/validate/{dataset}.log",
    conda:
        "../envs/ptycho.yaml"
    params:
        layout=lambda wc: dataset_setting(wc.dataset, "layout"),
        measurement=lambda wc: dataset_setting(wc.dataset, "measurement"),
        sha256=lambda wc: dataset_setting(wc.dataset, "sha256"),
    shell:
        "python {input.script} {input.raw} {output} --layout {params.layout}"
        " --measurement {params.measurement} --sha256 '{params.sha256}' 2> {log}"


rule transpose:
    input:
        raw="resources/{dataset}.npz",
        report="results/validated/{dataset}.json",
        script="scripts/transpose.py",
        sources=sources("scripts/transpose.py"),
    output:
        "results/canonical/{dataset}.npz",
    log:
        "logs/transpose/{dataset}.log",
    conda:
        "../envs/ptycho.yaml"
    params:
        layout=lambda wc: dataset_setting(wc.dataset, "layout"),
        measurement=lambda wc: dataset_setting(wc.dataset, "measurement"),
        nphotons=lambda wc: (
            f"--nphotons {dataset_setting(wc.dataset, 'nphotons')}"
            if dataset_setting(wc.dataset, "nphotons")
            else ""
        ),
    shell:
        "python {input.script} {input.raw} {output} --layout {params.layout}"
        " --measurement {params.measurement} {params.nphotons} 2> {log}"
