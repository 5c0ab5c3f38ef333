"""protoreg's benchmarks: ``make bench`` (``python -m benchmarks``) writes results.md and results.json.

Every comparison runs both sides in the same run, interleaved where possible, and reports
medians over several rounds with the ratio. Nothing here is part of the test suite's default run;
``tests/test_benchmarks.py`` runs the harness in its ``--smoke`` mode so it cannot rot.
"""
