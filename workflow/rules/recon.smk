# Model bundle + canonical scan -> reconstruction NPZ -> PNG.


rule infer:
    input:
        bundle=lambda wc: f"results/models/{model_of(wc.dataset)}/wts.h5.zip",
        data="results/canonical/{dataset}.npz",
        script="scripts/infer.py",
        cli="scripts/_cli.py",
        lib=lib("config", "bundle", "data", "io", "model", "provenance", "reconstruct", "runtime", "stitch"),
    output:
        "results/recon/{dataset}.npz",
    params:
        outdir=lambda wc, output: os.path.dirname(output[0]),
        flags=" ".join(
            [
                flags("infer", {"n_images": "--n_images", "batch_size": "--inference-batch-size",
                                "stitch": "--stitch", "middle_trim": "--middle-trim",
                                "pad_eval": "--pad-eval", "align_phase": "--align-phase"}),
                flags("execution", {"num_workers": "--num-workers"}),
                flags("data", {"gridsize": "--gridsize"}),
            ]
        ),
    threads: config["execution"]["threads"]
    resources:
        accelerator=config["execution"]["accelerator"],
        gpu=gpu_count(config["execution"]["accelerator"]),
        mem_mb=config["resources"]["infer"]["mem_mb"],
        runtime=config["resources"]["infer"]["runtime"],
    conda:
        "../envs/ptycho.yaml"
    log:
        "logs/infer/{dataset}.log",
    benchmark:
        "benchmarks/infer/{dataset}.tsv"
    shell:
        "python {input.script} --model_path {input.bundle} --test_data {input.data} --output_dir {params.outdir}"
        " {params.flags} --accelerator {resources.accelerator} --threads {threads} --quiet 2> {log}"


rule render:
    input:
        recon="results/{stage}/{dataset}.npz",
        script="scripts/render.py",
        cli="scripts/_cli.py",
        lib=lib("io", "metrics", "render", "stitch", "provenance"),
    output:
        "results/{stage}/{dataset}.png",
    params:
        title=lambda wc: f"{wc.dataset} - {stage_title(wc.stage, wc.dataset)}",
        dpi=config["render"]["dpi"],
    conda:
        "../envs/ptycho.yaml"
    log:
        "logs/render/{stage}/{dataset}.log",
    shell:
        "python {input.script} {input.recon} {output} --title '{params.title}' --dpi {params.dpi} 2> {log}"


rule evaluate:
    input:
        recon="results/{stage}/{dataset}.npz",
        reference="results/canonical/{dataset}.npz",
        script="scripts/evaluate.py",
        cli="scripts/_cli.py",
        lib=lib("io", "metrics", "stitch", "provenance"),
    output:
        "results/metrics/{stage}/{dataset}.json",
    conda:
        "../envs/ptycho.yaml"
    log:
        "logs/evaluate/{stage}/{dataset}.log",
    shell:
        "python {input.script} {input.recon} {input.reference} {output} > {log} 2>&1"


rule compare_methods:
    input:
        metrics=expand("results/metrics/{stage}/{{dataset}}.json", stage=STAGES),
        benchmarks=["benchmarks/infer/{dataset}.tsv", "benchmarks/baseline/{dataset}.tsv",
                    "benchmarks/refine/{dataset}.tsv"],
        script="scripts/compare_methods.py",
        lib=lib("io", "provenance"),
    output:
        "results/metrics/{dataset}.json",
    conda:
        "../envs/ptycho.yaml"
    log:
        "logs/compare_methods/{dataset}.log",
    shell:
        "python {input.script} {output} --metrics {input.metrics} --benchmarks {input.benchmarks} 2> {log}"
