"""The scripts here run in their own subprocesses (`tests/test_distributed.py`): each sets
up its devices before the framework starts, so pytest must not import them (the suite's
`--doctest-modules` would)."""

collect_ignore_glob = ["*_checks.py", "_common.py"]
