# Iterative reconstructions on the same footing as the network's: an ePIE baseline
# from a flat object, and the network's reconstruction refined by ePIE.


rule baseline:
    input:
        data="results/canonical/{dataset}.npz",
        script="scripts/solve.py",
        sources=sources("scripts/solve.py"),
    output:
        "results/baseline/{dataset}.npz",
    log:
        "logs/baseline/{dataset}.log",
    benchmark:
        "benchmarks/baseline/{dataset}.tsv"
    conda:
        "../envs/ptycho.yaml"
    threads: config["execution"]["threads"]
    resources:
        mem_mb=config["resources"]["infer"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
    params:
        flags=solver_flags(config["solver"]["iterations"]),
    shell:
        "python {input.script} --test_data {input.data} --output {output} {params.flags}"
        " --threads {threads} 2> {log}"


rule refine:
    input:
        data="results/canonical/{dataset}.npz",
        init="results/recon/{dataset}.npz",
        script="scripts/solve.py",
        sources=sources("scripts/solve.py"),
    output:
        "results/refined/{dataset}.npz",
    log:
        "logs/refine/{dataset}.log",
    benchmark:
        "benchmarks/refine/{dataset}.tsv"
    conda:
        "../envs/ptycho.yaml"
    threads: config["execution"]["threads"]
    resources:
        mem_mb=config["resources"]["infer"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
    params:
        flags=solver_flags(config["solver"]["refine_iterations"]),
    shell:
        "python {input.script} --test_data {input.data} --init {input.init} --output {output}"
        " {params.flags} --threads {threads} 2> {log}"
