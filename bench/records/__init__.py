"""Records: what a finished run leaves behind (record.py) and the run-set manifest that lists them (runset.py)."""
