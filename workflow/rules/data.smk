# Raw scan -> contract report -> canonical NPZ. A CXI file or a ptychodus folder is first
# converted to a raw NPZ (results/imported/), which then takes the same path.


rule convert:
    input:
        raw=lambda wc: raw_files(wc.dataset),
        sources=sources("scripts/convert.py"),
    output:
        "results/imported/{dataset}.npz",
    log:
        "logs/convert/{dataset}.log",
    conda:
        "../envs/ptycho.yaml"
    params:
        source=lambda wc: raw_source(wc.dataset),
        flags=lambda wc: dataset_flags(wc.dataset, "convert"),
    shell:
        "python -m scripts.convert '{params.source}' {output} {params.flags} 2> {log}"


rule validate:
    input:
        raw=lambda wc: contract_input(wc.dataset),
        sources=sources("scripts/validate.py"),
    output:
        "results/validated/{dataset}.json",
    log:
        "logs/validate/{dataset}.log",
    conda:
        "../envs/ptycho.yaml"
    params:
        flags=lambda wc: dataset_flags(wc.dataset, "validate"),
        # a scan too small for the data settings of its model is refused here
        data=lambda wc: flags(
            "validate", "data", data=model_settings(model_of(wc.dataset))
        ),
    shell:
        "python -m scripts.validate {input.raw} {output} {params.flags} {params.data} 2> {log}"


rule transpose:
    input:
        raw=lambda wc: contract_input(wc.dataset),
        report="results/validated/{dataset}.json",
        sources=sources("scripts/transpose.py"),
    output:
        "results/canonical/{dataset}.npz",
    log:
        "logs/transpose/{dataset}.log",
    conda:
        "../envs/ptycho.yaml"
    params:
        flags=lambda wc: dataset_flags(wc.dataset, "transpose"),
    shell:
        "python -m scripts.transpose {input.raw} {output} {params.flags} 2> {log}"
