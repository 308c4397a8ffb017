"""Building blocks of the fastsrv benchmark driver (``bench/run.py``)."""
