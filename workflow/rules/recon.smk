# Model bundle + canonical scan -> reconstruction NPZ -> PNG, and a ptychodus product.


rule infer:
    input:
        bundle=lambda wc: f"results/models/{model_of(wc.dataset)}/wts.h5.zip",
        data="results/canonical/{dataset}.npz",
        script="scripts/infer.py",
        sources=sources("scripts/infer.py"),
    output:
        "results/recon/{dataset}.npz",
    log:
        "logs/infer/{dataset}.log",
    benchmark:
        "benchmarks/infer/{dataset}.tsv"
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
        flags=" ".join(
            [
                flags(
                    "infer",
                    {
                        "n_images": "--n_images",
                        "batch_size": "--inference-batch-size",
                        "stitch": "--stitch",
                        "middle_trim": "--middle-trim",
                        "pad_eval": "--pad-eval",
                        "align_phase": "--align-phase",
                    },
                ),
                flags("execution", {"num_workers": "--num-workers"}),
                flags("data", {"gridsize": "--gridsize"}),
            ]
        ),
    shell:
        "python {input.script} --model_path {input.bundle} --test_data {input.data} --output_dir {params.outdir}"
        " {params.flags} --accelerator {resources.accelerator} --threads {threads} --quiet 2> {log}"


rule render:
    input:
        recon="results/{stage}/{dataset}.npz",
        script="scripts/render.py",
        sources=sources("scripts/render.py"),
    output:
        report(
            "results/{stage}/{dataset}.png",
            caption="../report/recon.rst",
            category="Reconstructions",
            subcategory="{stage}",
            labels={"scan": "{dataset}", "method": "{stage}"},
        ),
    log:
        "logs/render/{stage}/{dataset}.log",
    conda:
        "../envs/ptycho.yaml"
    params:
        title=lambda wc: f"{wc.dataset} - {stage_title(wc.stage, wc.dataset)}",
        model=lambda wc: model_of(wc.dataset),
        dpi=config["render"]["dpi"],
        positions=bool_flag(config["render"].get("positions", False), "positions"),
    shell:
        "python {input.script} {input.recon} {output} --title '{params.title}' --dpi {params.dpi}"
        " {params.positions} 2> {log}"


rule product:
    input:
        recon="results/recon/{dataset}.npz",
        data="results/canonical/{dataset}.npz",
        metrics=lambda wc: f"results/train/{model_of(wc.dataset)}/metrics.csv",
        script="scripts/product.py",
        sources=sources("scripts/product.py"),
    output:
        "results/recon/{dataset}.h5",
    log:
        "logs/product/{dataset}.log",
    conda:
        "../envs/ptycho.yaml"
    shell:
        "python {input.script} {input.recon} {input.data} {output} --metrics {input.metrics}"
        " --name {wildcards.dataset} 2> {log}"


rule evaluate:
    input:
        recon="results/{stage}/{dataset}.npz",
        reference="results/canonical/{dataset}.npz",
        script="scripts/evaluate.py",
        sources=sources("scripts/evaluate.py"),
    output:
        "results/metrics/{stage}/{dataset}.json",
    log:
        "logs/evaluate/{stage}/{dataset}.log",
    conda:
        "../envs/ptycho.yaml"
    shell:
        "python {input.script} {input.recon} {input.reference} {output} > {log} 2>&1"


rule compare_methods:
    input:
        metrics=expand("results/metrics/{stage}/{{dataset}}.json", stage=STAGES),
        benchmarks=[
            "benchmarks/infer/{dataset}.tsv",
            "benchmarks/baseline/{dataset}.tsv",
            "benchmarks/refine/{dataset}.tsv",
        ],
        script="scripts/compare_methods.py",
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
        title=lambda wc: f"{wc.dataset}: network, ePIE baseline and refinement against the reference",
    shell:
        "python {input.script} {output.summary} --metrics {input.metrics} --benchmarks {input.benchmarks}"
        " --figure {output.figure} --title '{params.title}' 2> {log}"
