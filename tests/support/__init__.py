"""Helpers shared by the test tiers (not fixtures: those live in conftest.py files).

The parts themselves (cluster client, operator process, phase watch, GitOps world) are the
sandbox's, shared with the demo and the benchmark; this package only adds what is about
asserting: polling with a deadline and reading a Promotion's status and Events.
"""
