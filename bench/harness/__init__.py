"""Building blocks of the benchmark scripts: ``bench/run.py`` (servers side by side),
``bench/scaling.py`` (workers) and ``bench/rolling_restart.py`` (a rolling restart behind HAProxy)."""
