"""Start the runtime roles from the installed packages: ``ajobs worker``, ``ajobs beat``, ``ajobs flower``.

Why not only ``celery -A worker.app worker``: Celery imports the app and the modules in its ``include``
with the working directory first on ``sys.path`` (``celery.utils.imports.import_from_cwd``, used by
``find_app`` and by the loader's ``import_default_modules``). Started from a directory that holds its
own ``tasks.py`` or ``worker.py``, it imports those instead of ours and stops with "'tasks' is not a
package". Here the app and our task modules are imported first, the ordinary way (installed packages
first; the ``ajobs`` script never puts the working directory on ``sys.path``), and the app object is
handed to Celery's command line. Celery's later imports of those names find them in ``sys.modules``.
The tool modules a deployment names in ``AJ_TOOL_MODULES`` are still imported by Celery, so one that
sits in the working directory keeps working.

``celery -A worker.app ...`` keeps working from the checkout.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery import Celery

DEFAULT_LOGLEVEL = "--loglevel=INFO"
"""Worker and beat log at INFO unless told otherwise (a later ``--loglevel`` wins): an operator sees
"ready." and each sweep fired."""


def load_app() -> Celery:
    """The Celery app, with our task modules already imported from the installed packages."""
    from worker.app import TASK_MODULES, app

    for name in TASK_MODULES:
        importlib.import_module(name)
    return app


def celery_command(app: Celery, argv: Sequence[str]) -> int:
    """Run Celery's command line (``argv`` without the program name) on ``app``; its exit code."""
    # Celery 5 returns the command's exit code here; celery-types declares it NoReturn.
    start: Callable[..., object] = app.start
    code = start(argv=list(argv))
    return code if isinstance(code, int) else 0


def run_worker(args: Sequence[str]) -> int:
    """``celery worker`` with its poll loop (a bootstep of the app) and ``args`` passed through."""
    return celery_command(load_app(), ["worker", DEFAULT_LOGLEVEL, *args])


def run_beat(args: Sequence[str]) -> int:
    """``celery beat`` with the redbeat scheduler the app configures, and ``args`` passed through."""
    return celery_command(load_app(), ["beat", DEFAULT_LOGLEVEL, *args])


def run_flower(args: Sequence[str]) -> int:
    """Flower with the launcher's credentials, address and port (`worker.flower`), ``args`` passed on.

    Flower runs in this process rather than through ``worker.flower.main``, which starts
    ``python -m celery -A worker.app flower`` and so imports the app with the working directory first.
    Raises `ConfigurationError` before anything starts when the credentials are missing.
    """
    from worker.flower import flower_argv, flower_env
    from worker.settings import get_settings

    settings = get_settings()
    env = flower_env(settings, dict(os.environ))
    # Flower reads its basic auth from FLOWER_BASIC_AUTH, never from the command line (ps shows that).
    os.environ.pop("FLOWER_BASIC_AUTH", None)
    os.environ.update(env)
    launcher = flower_argv(settings)
    # The launcher's own Flower options: what follows ``flower`` in the command it would run.
    options = launcher[launcher.index("flower") :]
    return celery_command(load_app(), [*options, *args])
