"""Make (once) and find the virtual environments of peers that cannot share raypipe's.

Ray Workflows (``ray.workflow``) was removed after Ray 2.47, and Prefect 3 needs an older
FastAPI than raypipe's service (3.9 pins ``fastapi<0.151``; 3.8 calls ``Body(min_items=)``,
which newer FastAPI removed). Each gets a virtual environment made from the same Python
interpreter, under a cache directory, with the same numpy, scikit-learn and psutil
versions as the main environment. An environment is made once: a stamp file records what
was installed, and a changed requirement list remakes it.

Example:
    >>> python = ensure_env("ray-workflows")  # doctest: +SKIP
    >>> python.name
    'python'
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from importlib.metadata import version
from pathlib import Path

__all__ = ["OWN_ENVS", "cache_dir", "ensure_env"]

# system key (peers.worker.SYSTEMS) -> what its environment needs besides the shared libraries
OWN_ENVS: dict[str, list[str]] = {
    "ray-workflows": ["ray==2.47.*", "pyarrow"],  # its storage is a pyarrow filesystem
    "prefect": ["prefect==3.9.*"],
}


def cache_dir() -> Path:
    """``$RAYPIPE_BENCH_CACHE``, else ``$XDG_CACHE_HOME/raypipe-bench`` (``~/.cache/...``)."""
    root = os.environ.get("RAYPIPE_BENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "raypipe-bench"
    )
    return Path(root)


def _requirements(system: str) -> list[str]:
    # the workloads' own libraries at the main environment's versions: the same code measured
    # (and a bare name, like pyarrow, at the main environment's version too)
    bare = [name for name in OWN_ENVS[system] if name.isidentifier()]
    pinned = [f"{name}=={version(name)}" for name in (*bare, "numpy", "scikit-learn", "psutil")]
    return [*(r for r in OWN_ENVS[system] if r not in bare), *pinned]


def ensure_env(system: str) -> Path:
    """The interpreter of ``system``'s own environment, made on first use.

    Raises:
        KeyError: ``system`` runs in the main environment.
        RuntimeError: pip could not install the requirements (its output is in the message).
    """
    home = cache_dir() / system
    python = home / "bin" / "python"
    stamp = home / "installed.txt"
    wanted = "\n".join(_requirements(system)) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"making the {system} environment in {home}: {', '.join(_requirements(system))}")
    venv.EnvBuilder(clear=True, with_pip=True).create(home)  # from this same interpreter
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *_requirements(system)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{system}: could not install {_requirements(system)} into {home}:\n"
            f"{done.stdout}{done.stderr}"
        )
    stamp.write_text(wanted)
    return python


if __name__ == "__main__":
    for name in sys.argv[1:] or list(OWN_ENVS):
        print(ensure_env(name))
