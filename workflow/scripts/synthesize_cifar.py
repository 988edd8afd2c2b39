"""Snakemake entry: generate a synthetic CIFAR-format archive (offline demos and tests) and its MD5."""

from _common import run_logged

snakemake = globals()["snakemake"]


def main(log) -> None:
    """Write the archive with convexbn.synthetic_cifar.make_cifar_archive and its checksum next to it."""
    from convexbn.io import atomic_write_bytes
    from convexbn.synthetic_cifar import make_cifar_archive

    cfg = snakemake.params.synthetic
    log.warning("generating SYNTHETIC %s data (not the real data set): %s", snakemake.wildcards.source, cfg)
    md5 = make_cifar_archive(
        snakemake.output.archive,
        snakemake.wildcards.source,
        n_train=int(cfg["n_train"]),
        n_test=int(cfg["n_test"]),
        seed=int(cfg["seed"]),
    )
    atomic_write_bytes(snakemake.output.md5, f"{md5}\n".encode())


run_logged(snakemake, "synthesize_cifar", main, threads=False)
