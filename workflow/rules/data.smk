# Raw scan -> contract report -> canonical NPZ. A CXI file or a ptychodus folder is first
# converted to a raw NPZ (results/imported/), which then takes the same path.


rule convert:
    input:
        raw=lambda wc: raw_files(wc.dataset),
        script="scripts/convert.py",
        sources=sources("scripts/convert.py"),
    output:
        "results/imported/{dataset}.npz",
    log:
        "logs/convert/{dataset}.log",
    conda:
        "../envs/ptycho.yaml"
    params:
        source=lambda wc: raw_source(wc.dataset),
        flags=lambda wc: convert_flags(wc.dataset),
    shell:
        "python {input.script} '{params.source}' {output} {params.flags} 2> {log}"


rule validate:
    input:
        raw=lambda wc: contract_input(wc.dataset),
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
        # convert wrote amplitudes and checked the SHA-256 of the user's file
        measurement=lambda wc: (
            "amplitude"
            if imported(wc.dataset)
            else dataset_setting(wc.dataset, "measurement")
        ),
        sha256=lambda wc: (
            "" if imported(wc.dataset) else dataset_setting(wc.dataset, "sha256")
        ),
    shell:
        "python {input.script} {input.raw} {output} --layout {params.layout}"
        " --measurement {params.measurement} --sha256 '{params.sha256}' 2> {log}"


rule transpose:
    input:
        raw=lambda wc: contract_input(wc.dataset),
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
        measurement=lambda wc: (
            "amplitude"
            if imported(wc.dataset)
            else dataset_setting(wc.dataset, "measurement")
        ),
        nphotons=lambda wc: (
            f"--nphotons {dataset_setting(wc.dataset, 'nphotons')}"
            if dataset_setting(wc.dataset, "nphotons")
            else ""
        ),
    shell:
        "python {input.script} {input.raw} {output} --layout {params.layout}"
        " --measurement {params.measurement} {params.nphotons} 2> {log}"
