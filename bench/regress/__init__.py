"""The regression check (python -m bench regress): bands from a stored baseline (bands.py) and the check that
trains the regress preset and compares (check.py); a stage of its own above runs and report."""
