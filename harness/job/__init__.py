"""The main job (``cxl-harness run``) and what it writes.

- ``main``: options, the rounds, the model runs, :func:`harness.job.main.run_main_job`;
- ``sections``: summary sections from results (shared with the pytest plugin);
- ``exports``: pyperf and pytest-benchmark files.

Nothing is imported here: the plugin takes ``sections`` and ``exports`` without the job.
"""
