"""Wires one node together from its config; owns startup and shutdown (built with the relay)."""
