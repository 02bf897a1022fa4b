# Model bundle + canonical scan -> reconstruction NPZ -> PNG.


rule infer:
    input:
        bundle=lambda wc: f"results/models/{model_of(wc.dataset)}/wts.h5.zip",
        data="results/canonical/{dataset}.npz",
        script="scripts/infer.py",
        sources=sources("scripts/infer.py"),
    output:
        "results/recon/{dataset}.npz",
    params:
        flags=" ".join(
            [
                flags("infer", {"batch_size": "--inference-batch-size", "stitch": "--stitch",
                                "middle_trim": "--middle-trim"}),
                bool_flag(config["infer"]["align_phase"], "align-phase"),
                flags("execution", {"accelerator": "--accelerator"}),
            ]
        ),
    threads: config["execution"]["threads"]
    resources:
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
        "python {input.script} --model_path {input.bundle} --test_data {input.data} --output {output}"
        " {params.flags} --threads {threads} --quiet 2> {log}"


rule render:
    input:
        recon="results/recon/{dataset}.npz",
        script="scripts/render.py",
        sources=sources("scripts/render.py"),
    output:
        report(
            "results/recon/{dataset}.png",
            caption="../report/recon.rst",
            category="Reconstructions",
            labels={"scan": "{dataset}"},
        ),
    params:
        title=lambda wc: f"{wc.dataset} - model {model_of(wc.dataset)}",
        model=lambda wc: model_of(wc.dataset),
        dpi=config["render"]["dpi"],
    conda:
        "../envs/ptycho.yaml"
    log:
        "logs/render/{dataset}.log",
    shell:
        "python {input.script} {input.recon} {output} --title '{params.title}' --dpi {params.dpi} 2> {log}"


rule evaluate:
    input:
        recon="results/recon/{dataset}.npz",
        reference="results/canonical/{dataset}.npz",
        script="scripts/evaluate.py",
        sources=sources("scripts/evaluate.py"),
    output:
        "results/metrics/{dataset}.json",
    conda:
        "../envs/ptycho.yaml"
    log:
        "logs/evaluate/{dataset}.log",
    shell:
        "python {input.script} {input.recon} {input.reference} {output} > {log} 2>&1"
