"""Lunark's benchmarks: every figure measured against a baseline in the same run.

    ./dev bench            # the whole suite, ~5 minutes on 2 cores
    ./dev bench --quick    # a ~1 minute smoke run

See docs/performance.md for what is measured and the latest results.
"""
