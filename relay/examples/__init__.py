"""Example services built on relay: the demo's orders service."""
