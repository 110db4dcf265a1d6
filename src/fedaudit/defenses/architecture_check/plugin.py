"""The architecture check as a defense: every client refuses a round whose model definition or
tensor layout differs from the one agreed at enrolment (paper 002's "model scanning" and "hash
verification", measured by the trap-weight attack's defense table)."""

from pathlib import Path

from fedaudit.catalog import DefenseSpec

DEFENSE = DefenseSpec(
    name="architecture_check", title="Architecture check", folder=Path(__file__).parent,
    client_mods=".check:client_mods")
