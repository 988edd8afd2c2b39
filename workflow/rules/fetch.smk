# Stage 1 — fetch: CIFAR archives from the official URL (or a mirror, or a local archive, or a
# generated CIFAR-format archive for offline demos), MD5 verified, retried, written atomically.


rule synthesize_cifar:
    """Generate a CIFAR-format archive with learnable class structure (tests and offline demos)."""
    output:
        archive="results/raw/synthetic/{source}.tar.gz",
        md5="results/raw/synthetic/{source}.md5",
    log:
        "results/logs/fetch/synthesize_{source}.log",
    benchmark:
        "results/benchmarks/fetch/synthesize_{source}.tsv"
    localrule: True
    conda:
        "../../envs/fetch.yaml"
    threads: res("fetch", "threads")
    resources:
        mem_mb=res("fetch", "mem_mb"),
        runtime=res("fetch", "runtime"),
    params:
        synthetic=lambda wc: synthetic_cfg(wc.source),
    message:
        "Generating a SYNTHETIC CIFAR-format archive for {wildcards.source}"
    script:
        "../scripts/synthesize_cifar.py"


rule fetch_cifar:
    """Download (or copy) one CIFAR archive, verify its MD5, place it atomically."""
    input:
        unpack(fetch_input),
    output:
        "results/raw/{source}.tar.gz",
    log:
        "results/logs/fetch/fetch_{source}.log",
    benchmark:
        "results/benchmarks/fetch/fetch_{source}.tsv"
    retries: config["fetch"]["job_retries"]
    localrule: True
    conda:
        "../../envs/fetch.yaml"
    threads: res("fetch", "threads")
    resources:
        mem_mb=res("fetch", "mem_mb"),
        runtime=res("fetch", "runtime"),
    params:
        source=lambda wc: config["data"][wc.source],
        fetch=config["fetch"],
    message:
        "Fetching {wildcards.source} (MD5 verified) into {output}"
    script:
        "../scripts/fetch.py"
