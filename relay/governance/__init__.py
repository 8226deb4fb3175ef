"""Governed side effects (issue 17), the pure parts: the side-effect lifecycle, the evidence
hash chain and the approval rules. The gate's policies are in :mod:`relay.policy`."""
