"""One small app per supported framework, for ``tests/test_router_differential.py``."""
