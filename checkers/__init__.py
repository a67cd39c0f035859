"""Checkers: read a history, return a three-valued verdict with the ops that prove each anomaly.

``checkers.base`` holds the plug point and composition; each other module is
one checker. ``checkers.registry.build(names)`` makes checkers from the names
a workload declares.
"""
