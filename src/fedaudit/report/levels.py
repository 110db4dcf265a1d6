"""The verdict levels every finding uses: one vocabulary for the front page, each level with the
rule that decides it (CONTRIBUTING.md, "Findings").

A finding is read against a null a trivial answer cannot beat and a positive control where the
attack must succeed. The levels say which of those held:

- **high** and **moderate**: the attack succeeds beyond its null -- by a lower confidence bound
  where the attack has one (corrected for the number of attacks read), else by a score threshold
  the attack documents. High needs the attack's high threshold; moderate is every detected effect
  below it: a leak the null cannot explain is a finding, however small.
- **not detected**: no effect beyond the null, by a test whose power is stated with it (its
  positive control succeeds, and what the sample could have seen). Absence of evidence, never
  "safe".
- **resists at this budget**: an optimisation attack fails on the audited model while the same
  attack, at the same budget, breaks its positive control (the architecture is reachable).
- **no usable model**: the model the attack reads does not produce a usable output (it does not
  beat the constant predictor, or its outputs are not finite); its numbers are not read.
- **nothing to attack**: the adversary holds nothing this attack reads in the audited setting.
- **inconclusive**: the positive control fails, or the sample is too small to conclude: no
  conclusion either way.
- **info**: a measurement that is not a risk (utility, the price of a defense, what each defense
  stops).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    HIGH = "high"
    MODERATE = "moderate"
    NOT_DETECTED = "not detected"
    RESISTS = "resists at this budget"
    NO_MODEL = "no usable model"
    NOTHING = "nothing to attack"
    INCONCLUSIVE = "inconclusive"
    INFO = "info"


# Each level's rule, as the report prints it.
RULES: dict[Level, str] = {
    Level.HIGH: "the attack succeeds beyond its null above its high threshold",
    Level.MODERATE: "the attack succeeds beyond its null, below its high threshold",
    Level.NOT_DETECTED: "no effect beyond the null, by a test whose power is stated",
    Level.RESISTS: "the attack fails here while, at the same budget, it breaks its positive "
                   "control",
    Level.NO_MODEL: "the attacked model gives no usable output; its numbers are not read",
    Level.NOTHING: "the adversary holds nothing this attack reads",
    Level.INCONCLUSIVE: "the positive control fails or the sample is too small",
    Level.INFO: "a measurement, not a risk",
}

# What a reader does about a finding of each level, where its table gives no advice of its own.
ADVICE: dict[Level, str] = {
    Level.HIGH: "act before deployment: turn on a defense the detail shows stops it",
    Level.MODERATE: "a real leak: turn on a defense the detail shows stops it",
    Level.NOT_DETECTED: "not a clean bill: nothing seen at the stated power; keep auditing",
    Level.RESISTS: "holds at this budget only; a stronger attacker may succeed",
    Level.NO_MODEL: "fix training first: nothing else can be read",
    Level.NOTHING: "none in this setting",
    Level.INCONCLUSIVE: "no conclusion: its control or sample is too weak; do not read as safe",
    Level.INFO: "",
}

# Levels that claim the model held: each must say why the test could have seen an effect.
NEEDS_POWER = frozenset({Level.NOT_DETECTED, Level.RESISTS})

# The most severe first: a summary of several findings reads the first that occurs.
SEVERITY = (Level.HIGH, Level.MODERATE, Level.INCONCLUSIVE, Level.NO_MODEL, Level.NOT_DETECTED,
            Level.RESISTS, Level.NOTHING, Level.INFO)


def worst(levels: list[Level]) -> Level | None:
    """The most severe of ``levels`` (:data:`SEVERITY`), None for none."""
    return min(levels, key=SEVERITY.index) if levels else None


def beyond_null(margin: float, high: float) -> Level | None:
    """The level of an effect whose lower bound exceeds its null by ``margin`` (a share or an
    AUC above chance): high from ``high`` on, moderate above 0, None when nothing is detected
    (the caller then decides between not detected, resists and inconclusive by its control)."""
    if margin >= high:
        return Level.HIGH
    if margin > 0:
        return Level.MODERATE
    return None


@dataclass(frozen=True)
class Finding:
    """One line of the verdict: its topic, its level (:class:`~fedaudit.report.levels.Level`,
    a level's name is accepted) and the numbers behind it. ``power`` says why the test could
    have seen an effect; a level that claims the model held (:data:`NEEDS_POWER`) must give
    it."""

    topic: str
    level: Level
    sentence: str
    power: str = ""
    # A significance claim's one-sided p-value against its null (NaN: the line claims no
    # significance); the front page corrects these for their number (Holm).
    p_value: float = float("nan")
    # For the front page's summary table, each a short phrase: the number the level rests on
    # (with its interval where it has one), the control that licenses the level, who attacks
    # (the attacker's view; the front page fills it from the table's attack) and what to do
    # (the table's advice for the level, else the level's own).
    number: str = ""
    control: str = ""
    attacker: str = ""
    advice: str = ""

    def __post_init__(self) -> None:
        try:
            level = Level(self.level)
        except ValueError:
            raise ValueError(f"finding {self.topic!r}: level {self.level!r} is not a verdict "
                             f"level ({', '.join(v.value for v in Level)})") from None
        object.__setattr__(self, "level", level)
        if level in NEEDS_POWER and not self.power.strip():
            raise ValueError(f"finding {self.topic!r}: a {level.value!r} finding states the "
                             "test's power (power=...)")

    @property
    def text(self) -> str:
        """The sentence, with the test's power when it has one."""
        return self.sentence + (f" Power: {self.power}" if self.power else "")
