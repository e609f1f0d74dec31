"""Helpers shared by tests and benchmarks, by role: packages, events, broker, processes, ports.

A ``test_*`` module holds tests only; whatever two of them (or a benchmark) share lives here.
"""
