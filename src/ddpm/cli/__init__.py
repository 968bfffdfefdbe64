"""The three entry points, named after their console scripts: ``ddpm-train``, ``ddpm-eval``, ``ddpm-sample``.

Each is a thin Hydra app around a library call, wrapped by :func:`ddpm.cli.task_wrapper.task_wrapper`.
Libraries never import from here.
"""
