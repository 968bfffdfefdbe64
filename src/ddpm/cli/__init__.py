"""The entry points, named after their console scripts: ``ddpm-train``, ``ddpm-eval``, ``ddpm-sample``,
``ddpm-export`` and ``ddpm-prepare-lsun``.

Each is a thin app around a library call, run through :func:`ddpm.cli.task_wrapper.run_task` (one
error contract). Libraries never import from here.
"""
