"""Where this process finds (or builds) the toy base: one cache per CPU kernel mode.

A portable build (`VGROUT_CPU_KERNELS=portable`, see `vgrout.kernels`) trains other weights from
the same recipe, so it lives beside the native cache (`.../vgrout/toy-portable/<key>`), never in
it, and is always trained on PORTABLE_BUILD_THREADS threads: under portable kernels the thread
count still changes the weights (measured: 1 and 2 threads give other bases; native builds did
not differ), so it cannot follow the machine's load as a native build does. This is kept out of
`toy/model.py` on purpose: that file's bytes are part of every build key, and editing it would
rename every cached base and orphan the runs made on them.
"""

from __future__ import annotations

from pathlib import Path

from vgrout import kernels
from vgrout.toy.model import (
    ToyRecipe,
    build_key,
    build_toy_base,
    default_cache_dir,
    training_corpus,
)

PORTABLE_BUILD_THREADS = 2


def cache_dir() -> Path:
    """The toy cache root for the requested kernel mode."""
    root, mode = default_cache_dir(), kernels.requested()
    return root if mode == "native" else root.with_name(f"{root.name}-{mode}")


def base_folder(recipe: ToyRecipe, seed: int = 0) -> Path:
    """The folder `toy_base` builds for this recipe, without building it."""
    return cache_dir() / build_key(seed, recipe, *training_corpus(seed, recipe))


def toy_base(
    recipe: ToyRecipe | None = None, seed: int = 0, progress: bool = True, force: bool = False
) -> Path:
    """Build (or reuse) the toy base under the active kernels; return its folder."""
    threads = None  # native: auto_threads(), by the machine's load
    if kernels.requested() != "native":
        kernels.verify()  # a portable cache must never receive a native build
        threads = PORTABLE_BUILD_THREADS
    return build_toy_base(
        seed=seed,
        recipe=recipe,
        cache_dir=cache_dir(),
        progress=progress,
        force=force,
        threads=threads,
    )
