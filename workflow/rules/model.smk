# Canonical scan -> trained network -> model bundle.


rule train:
    input:
        data=lambda wc: f"results/canonical/{training_data(wc.model)}.npz",
        script="scripts/train.py",
        sources=sources("scripts/train.py"),
    output:
        ckpt="results/train/{model}/last.ckpt",
        metrics=report(
            "results/train/{model}/metrics.csv",
            caption="../report/training.rst",
            category="Training",
            labels={"model": "{model}"},
        ),
    params:
        outdir=lambda wc, output: os.path.dirname(output.ckpt),
        flags=" ".join(
            [
                flags("data", {"gridsize": "--gridsize", "neighbours": "--neighbours",
                               "n_groups": "--n_images", "val_fraction": "--val-fraction"}),
                flags("model", {"width": "--width", "loss": "--loss", "norm": "--norm",
                                "input_transform": "--input-transform"}),
                bool_flag(config["model"]["align_phase"], "align-phase"),
                flags("train", {"max_epochs": "--max_epochs", "batch_size": "--batch_size",
                                "learning_rate": "--learning-rate", "seed": "--seed"}),
                bool_flag(config["train"]["deterministic"], "deterministic"),
                flags("execution", {"accelerator": "--accelerator", "num_workers": "--num-workers"}),
            ]
        ),
    threads: config["execution"]["threads"]
    resources:
        gpu=gpu_count(config["execution"]["accelerator"]),
        mem_mb=config["resources"]["train"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
    conda:
        "../envs/ptycho.yaml"
    log:
        "logs/train/{model}.log",
    benchmark:
        "benchmarks/train/{model}.tsv"
    shell:
        "python {input.script} --train_data_file {input.data} --output_dir {params.outdir}"
        " {params.flags} --threads {threads} --quiet 2> {log}"


rule export:
    input:
        ckpt="results/train/{model}/last.ckpt",
        script="scripts/export.py",
        sources=sources("scripts/export.py"),
    output:
        "results/models/{model}/wts.h5.zip",
    conda:
        "../envs/ptycho.yaml"
    log:
        "logs/export/{model}.log",
    shell:
        "python {input.script} {input.ckpt} {output} 2> {log}"
