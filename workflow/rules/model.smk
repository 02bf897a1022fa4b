# Canonical scan -> trained network -> model bundle.


rule train:
    input:
        data=lambda wc: [scan_file(d) for d in training_data(wc.model)],
        sources=sources("scripts/train.py"),
    output:
        best="results/train/{model}/best.ckpt",
        last="results/train/{model}/last.ckpt",
        metrics=report(
            "results/train/{model}/metrics.csv",
            caption="../report/training.rst",
            category="Training",
            labels={"model": "{model}", "file": "metrics.csv"},
        ),
        checkpoints=directory("results/train/{model}/checkpoints"),
    log:
        "logs/train/{model}.log",
    benchmark:
        "logs/timings/train/{model}.tsv"
    conda:
        "../envs/ptycho.yaml"
    threads: config["execution"]["threads"]
    resources:
        accelerator=config["execution"]["accelerator"],
        gpu=gpu_count(
            config["execution"]["accelerator"], config["execution"]["devices"]
        ),
        mem_mb=config["resources"]["train"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
        # one training as SLURM tasks: devices per node on `nodes` nodes, srun-started
        tasks_per_node=config["execution"]["devices"],
        nodes=config["execution"]["nodes"],
        mpi=lambda wc: task_launcher(),
    params:
        outdir=lambda wc, output: os.path.dirname(output.best),
        flags=lambda wc: flags(
            "train",
            "data",
            "model",
            "train",
            "execution",
            data=model_settings(wc.model),
        ),
    shell:
        "{resources.mpi} python -m scripts.train --train-data-file {input.data} --output-dir {params.outdir}"
        " {params.flags} --accelerator {resources.accelerator} --threads {threads} --quiet 2> {log}"


rule teacher:
    input:
        bundle=lambda wc: f"results/models/{model_of(wc.dataset)}/wts.h5.zip",
        data=lambda wc: scan_file(wc.dataset),
        sources=sources("scripts/infer.py") + sources("scripts/solve.py"),
    output:
        # the reused model's reconstruction as is, and refined: what the adaptation learns
        reused="results/adapt/{dataset}/reused.npz",
        teacher="results/adapt/{dataset}/teacher.npz",
    log:
        "logs/teacher/{dataset}.log",
    benchmark:
        "logs/timings/teacher/{dataset}.tsv"
    conda:
        "../envs/ptycho.yaml"
    threads: config["execution"]["threads"]
    resources:
        accelerator=config["execution"]["accelerator"],
        gpu=gpu_count(config["execution"]["accelerator"]),
        mem_mb=config["resources"]["infer"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
    params:
        infer=flags("infer", "infer", "solver", "execution"),
        solve=flags("refined", "solver", "execution"),
        gridsize=config["data"]["gridsize"],
        probe=probe_refinement,
    shell:
        "(python -m scripts.infer --model-path {input.bundle} --test-data {input.data} --output {output.reused}"
        " {params.infer} --gridsize {params.gridsize} --accelerator {resources.accelerator} --threads {threads} --quiet"
        " && python -m scripts.solve refined --test-data {input.data} --init {output.reused} --output {output.teacher}"
        " {params.solve} {params.probe} --threads {threads}) 2> {log}"


rule adapt:
    input:
        bundle=lambda wc: f"results/models/{model_of(wc.dataset)}/wts.h5.zip",
        data=lambda wc: scan_file(wc.dataset),
        teacher=teacher_of,
        sources=sources("scripts/train.py") + sources("scripts/export.py"),
    output:
        bundle="results/adapt/{dataset}/wts.h5.zip",
        best="results/adapt/{dataset}/best.ckpt",
        last="results/adapt/{dataset}/last.ckpt",
        metrics=report(
            "results/adapt/{dataset}/metrics.csv",
            caption="../report/adapt.rst",
            category="Training",
            labels={"model": "{dataset} (adapted)", "file": "metrics.csv"},
        ),
        checkpoints=directory("results/adapt/{dataset}/checkpoints"),
    log:
        "logs/adapt/{dataset}.log",
    benchmark:
        "logs/timings/adapt/{dataset}.tsv"
    conda:
        "../envs/ptycho.yaml"
    threads: config["execution"]["threads"]
    resources:
        accelerator=config["execution"]["accelerator"],
        gpu=gpu_count(
            config["execution"]["accelerator"], config["execution"]["devices"]
        ),
        mem_mb=config["resources"]["train"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
        tasks_per_node=config["execution"]["devices"],
        nodes=config["execution"]["nodes"],
        mpi=lambda wc: task_launcher(),
    params:
        outdir=lambda wc, output: os.path.dirname(output.best),
        teacher=lambda wc, input: f"--teacher {input.teacher}" if input.teacher else "",
        # adapt_epochs epochs of the new scan alone (ptycho_lib.config.ADAPTATION)
        flags=lambda wc: flags(
            "train",
            "data",
            "model",
            "train",
            "execution",
            data=ADAPTATION["data"],
            train={
                **ADAPTATION["train"],
                "max_epochs": dataset_settings(wc.dataset)["adapt_epochs"],
            },
        ),
    shell:
        "({resources.mpi} python -m scripts.train --init-model {input.bundle} --train-data-file {input.data}"
        " --output-dir {params.outdir} {params.teacher} {params.flags}"
        " --accelerator {resources.accelerator} --threads {threads} --quiet"
        " && python -m scripts.export {output.best} {output.bundle}) 2> {log}"


rule export:
    input:
        ckpt="results/train/{model}/best.ckpt",
        sources=sources("scripts/export.py"),
    output:
        "results/models/{model}/wts.h5.zip",
    log:
        "logs/export/{model}.log",
    conda:
        "../envs/ptycho.yaml"
    shell:
        "python -m scripts.export {input.ckpt} {output} 2> {log}"


rule loss_curve:
    input:
        metrics="results/train/{model}/metrics.csv",
        sources=sources("scripts/loss_curve.py"),
    output:
        report(
            "results/train/{model}/loss.png",
            caption="../report/loss.rst",
            category="Training",
            labels={"model": "{model}", "file": "loss curve"},
        ),
    log:
        "logs/loss_curve/{model}.log",
    conda:
        "../envs/ptycho.yaml"
    params:
        flags=flags("loss_curve", "render"),
    shell:
        "python -m scripts.loss_curve {input.metrics} {output} --title 'model {wildcards.model}'"
        " {params.flags} 2> {log}"
