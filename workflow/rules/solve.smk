# Iterative reconstructions on the same footing as the network's: an ePIE baseline
# from a flat object, and the network's reconstruction refined by ePIE.


rule baseline:
    input:
        data="results/canonical/{dataset}.npz",
        script="scripts/solve.py",
        cli="scripts/_cli.py",
        lib=lib("data", "io", "iterative", "physics", "stitch", "provenance"),
    output:
        "results/baseline/{dataset}.npz",
    params:
        flags=solver_flags(config["solver"]["iterations"]),
    threads: config["execution"]["threads"]
    resources:
        mem_mb=config["resources"]["infer"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
    conda:
        "../envs/ptycho.yaml"
    log:
        "logs/baseline/{dataset}.log",
    benchmark:
        "benchmarks/baseline/{dataset}.tsv"
    shell:
        "python {input.script} --test_data {input.data} --output {output} {params.flags}"
        " --threads {threads} 2> {log}"


rule refine:
    input:
        data="results/canonical/{dataset}.npz",
        init="results/recon/{dataset}.npz",
        script="scripts/solve.py",
        cli="scripts/_cli.py",
        lib=lib("data", "io", "iterative", "physics", "stitch", "provenance"),
    output:
        "results/refined/{dataset}.npz",
    params:
        flags=solver_flags(config["solver"]["refine_iterations"]),
    threads: config["execution"]["threads"]
    resources:
        mem_mb=config["resources"]["infer"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
    conda:
        "../envs/ptycho.yaml"
    log:
        "logs/refine/{dataset}.log",
    benchmark:
        "benchmarks/refine/{dataset}.tsv"
    shell:
        "python {input.script} --test_data {input.data} --init {input.init} --output {output}"
        " {params.flags} --threads {threads} 2> {log}"
