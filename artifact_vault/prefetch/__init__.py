"""``artifact-vault prefetch``: fill the cache with what an offline site will need.

Everything is fetched through a Vault started in this process on a loopback port (``local``),
so the cache is filled exactly as by clients: same keys, same verification. A server already
running on the same ``cache_dir`` is safe: the per-key file locks of ``cache.keylock`` make the
two processes fetch each artifact once between them.
"""

from __future__ import annotations

import sys
from typing import TextIO

from ..config import Config
from ..errors import ConfigError
from ..progress import Progress, human_bytes, shorten
from .images import prefetch_image
from .job import Job
from .local import CACHED, FAILED, FETCHED, LocalVault, Outcome, Outcomes
from .pypi import is_lock_file, prefetch_lock_file, resolve_with_pip
from .runner import Runner

__all__ = ["Job", "run", "pypi_prefix"]


def pypi_prefix(config: Config, job: Job) -> str:
    """The pypi backend's prefix: the one the job names, else the first configured."""
    prefixes = [b.prefix for b in config.backends if b.type == "pypi"]
    if job.pypi_prefix is not None:
        wanted = "/" + job.pypi_prefix.strip("/") + "/"
        if wanted not in prefixes:
            raise ConfigError(f"pypi prefix {job.pypi_prefix!r} is not a pypi backend of the "
                              f"config; configured: {', '.join(prefixes) or 'none'}")
        return wanted
    if not prefixes:
        raise ConfigError("the job has Python requirements but the config has no pypi backend; "
                          "add one to backends")
    return prefixes[0]


def run(config: Config, job: Job, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
        tty: bool | None = None, interval: float = 5.0) -> int:
    """Prefetch ``job`` into ``config``'s cache; print progress to ``err`` and the summary to
    ``out``. Returns the exit status: 1 if anything failed."""
    prefix = pypi_prefix(config, job) if job.requirements else ""
    outcomes = Outcomes()
    with Progress("prefetch", err, tty=tty, interval=interval) as progress:
        vault = LocalVault(config, progress, outcomes)
        try:
            runner = Runner(vault, progress, outcomes)
            try:
                for url in job.urls:
                    runner.submit(url, "/" + url.lstrip("/"))
                for ref in job.images:
                    prefetch_image(runner, ref, job.image_platforms)
                for path in job.requirements:
                    if not path.is_file():
                        outcomes.add(Outcome(str(path), FAILED, reason="no such file"))
                    elif is_lock_file(path):
                        prefetch_lock_file(runner, prefix, path)
                    else:
                        resolve_with_pip(runner, prefix, path, job.python_versions,
                                         job.pip_platforms)
            except BaseException:
                runner.wait(cancel=True)
                raise
            runner.wait()
        finally:
            vault.close()
    print_summary(outcomes.items, out)
    return 1 if outcomes.failed() else 0


def print_summary(items: list[Outcome], out: TextIO) -> None:
    """One row per item (failures last, with their reason), then the totals."""
    order = {FETCHED: 0, CACHED: 1, FAILED: 2}
    rows = sorted(items, key=lambda o: (order.get(o.result, 3), o.item))
    width = min(max([len(o.item) for o in rows] + [4]), 72)
    out.write(f"{'item':<{width}}  {'result':<14}  {'bytes':>10}  reason\n")
    for o in rows:
        row = f"{shorten(o.item, width):<{width}}  {o.result:<14}  {human_bytes(o.size):>10}"
        out.write(f"{row}  {o.reason}".rstrip() + "\n")
    counts = {r: sum(1 for o in items if o.result == r) for r in (FETCHED, CACHED, FAILED)}
    total = sum(o.size for o in items)
    out.write(f"{counts[FETCHED]} fetched, {counts[CACHED]} already cached, "
              f"{counts[FAILED]} failed; {human_bytes(total)} read\n")
    out.flush()
