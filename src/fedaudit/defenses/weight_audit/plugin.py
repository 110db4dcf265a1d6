"""The weight audit as a defense: every client compares each received model with the previous
one and flags trap weights (paper 002's "auditing linear layers", measured by the trap-weight
attack's defense table: detections on trap rounds, false alarms over every honest round)."""

from pathlib import Path

from fedaudit.catalog import DefenseSpec

DEFENSE = DefenseSpec(
    name="weight_audit", title="Weight audit", folder=Path(__file__).parent,
    client_mods=".audit:client_mods")
