# Model bundle + canonical scan -> reconstruction NPZ -> PNG, and a ptychodus product.


rule recon:
    input:
        bundle=lambda wc: bundle_of(wc.dataset),
        data=lambda wc: scan_file(wc.dataset),
        sources=sources("scripts/infer.py"),
    output:
        "results/recon/{dataset}.npz",
    log:
        "logs/recon/{dataset}.log",
    benchmark:
        "logs/timings/recon/{dataset}.tsv"
    conda:
        "../envs/ptycho.yaml"
    threads: config["execution"]["threads"]
    resources:
        accelerator=config["execution"]["accelerator"],
        gpu=gpu_count(config["execution"]["accelerator"]),
        mem_mb=config["resources"]["infer"]["mem_mb"],
        runtime=config["resources"]["infer"]["runtime"],
    params:
        outdir=lambda wc, output: os.path.dirname(output[0]),
        flags=flags("infer", "infer", "solver", "execution"),
        gridsize=config["data"]["gridsize"],
    shell:
        "python -m scripts.infer --model-path {input.bundle} --test-data {input.data} --output-dir {params.outdir}"
        " {params.flags} --gridsize {params.gridsize} --accelerator {resources.accelerator} --threads {threads} --quiet 2> {log}"


rule render:
    input:
        recon="results/{method}/{dataset}.npz",
        sources=sources("scripts/render.py"),
    output:
        report(
            "results/{method}/{dataset}.png",
            caption="../report/recon.rst",
            category="Reconstructions",
            subcategory=lambda wc: METHOD_NAMES[wc.method],
            labels=lambda wc: {"scan": wc.dataset, "method": METHOD_NAMES[wc.method]},
        ),
    log:
        "logs/render/{method}/{dataset}.log",
    conda:
        "../envs/ptycho.yaml"
    params:
        title=lambda wc: f"{wc.dataset} - {method_title(wc.method, wc.dataset)}",
        model=lambda wc: model_of(wc.dataset),
        flags=flags("render", "render"),
    shell:
        "python -m scripts.render {input.recon} {output} --title '{params.title}' {params.flags} 2> {log}"


rule compare_figure:
    input:
        recons=expand("results/{method}/{{dataset}}.npz", method=METHODS),
        sources=sources("scripts/render.py"),
    output:
        report(
            "results/compare/{dataset}.png",
            caption="../report/compare.rst",
            category="Reconstructions",
            subcategory="All three side by side",
            labels={"scan": "{dataset}", "method": "all three"},
        ),
    log:
        "logs/compare_figure/{dataset}.log",
    conda:
        "../envs/ptycho.yaml"
    params:
        labels=METHODS,
        flags=flags("render", "render"),
    shell:
        "python -m scripts.render {input.recons} {output} --labels {params.labels}"
        " --title '{wildcards.dataset}: the three reconstructions, one colour scale' {params.flags} 2> {log}"


rule probe_figure:
    input:
        data=lambda wc: scan_file(wc.dataset),
        sources=sources("scripts/render.py"),
    output:
        report(
            "results/probe/{dataset}.png",
            caption="../report/probe.rst",
            category="Probes",
            labels={"scan": "{dataset}"},
        ),
    log:
        "logs/probe_figure/{dataset}.log",
    conda:
        "../envs/ptycho.yaml"
    params:
        flags=flags("render", "render"),
    shell:
        "python -m scripts.render --probe {input.data} {output} --title '{wildcards.dataset}: probe'"
        " {params.flags} 2> {log}"


rule product:
    input:
        recon="results/recon/{dataset}.npz",
        data=lambda wc: scan_file(wc.dataset),
        metrics=lambda wc: metrics_of(wc.dataset),
        sources=sources("scripts/product.py"),
    output:
        "results/recon/{dataset}.h5",
    log:
        "logs/product/{dataset}.log",
    conda:
        "../envs/ptycho.yaml"
    shell:
        "python -m scripts.product {input.recon} {input.data} {output} --metrics {input.metrics}"
        " --name {wildcards.dataset} 2> {log}"


rule evaluate:
    input:
        recon="results/{method}/{dataset}.npz",
        reference=lambda wc: scan_file(wc.dataset),
        sources=sources("scripts/evaluate.py"),
    output:
        "results/metrics/{method}/{dataset}.json",
    log:
        "logs/evaluate/{method}/{dataset}.log",
    conda:
        "../envs/ptycho.yaml"
    shell:
        "python -m scripts.evaluate {input.recon} {input.reference} {output} > {log} 2>&1"


rule compare_methods:
    input:
        metrics=expand("results/metrics/{method}/{{dataset}}.json", method=METHODS),
        timings=expand("logs/timings/{method}/{{dataset}}.tsv", method=METHODS),
        sources=sources("scripts/compare_methods.py"),
    output:
        summary="results/metrics/{dataset}.json",
        figure=report(
            "results/metrics/{dataset}.png",
            caption="../report/metrics.rst",
            category="Metrics",
            labels={"scan": "{dataset}"},
        ),
    log:
        "logs/compare_methods/{dataset}.log",
    conda:
        "../envs/ptycho.yaml"
    params:
        title=lambda wc: f"{wc.dataset}: the three methods, scored",
    shell:
        "python -m scripts.compare_methods {output.summary} --metrics {input.metrics} --timings {input.timings}"
        " --figure {output.figure} --title '{params.title}' 2> {log}"
