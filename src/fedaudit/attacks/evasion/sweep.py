"""The attack settings one evasion job crafts, derived from ``attacks.evasion`` (pure Python).

Paper 004's three analyses (§IV-C, §V) fix what is swept, everything else held at the primary
setting (ε = ``epsilon``, α = ``alpha_fraction``·ε, the paper's ε = 0.03 and α ≈ ε/4):

- **ε sweep** (their Fig. 3): every attack at every ``epsilons`` value, iterative attacks at the
  fewest ``steps`` (PGD-20);
- **steps** (their Table I: PGD-20 against PGD-40 and the time it costs): the iterative attacks
  at every ``steps`` value, FGSM beside them, at the primary ε;
- **α sweep** (their §V-B, α from small to ε at ε = 0.03): BIM and PGD at every
  ``alpha_fractions``·ε;
- **targeted** (this audit's clinical question): every attack at the primary setting, pushing
  the region's HU toward ``targeted.target_hu``;
- **null**: a random corner of the same ε-ball (:func:`fedaudit.attacks.evasion.algorithm.
  random_sign`) at every ε, untargeted, and at the primary ε, targeted.

A setting shared by several analyses is crafted once; its row carries one flag per analysis.
The **headline** setting is the strongest Table I row: PGD (else BIM, else FGSM) at the primary
ε and α with the most steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ITERATIVE = ("bim", "pgd")
NULL = "random"
GOALS = ("untargeted", "targeted")


@dataclass(frozen=True)
class Setting:
    """One crafted (or null) perturbation: the attack, its goal and which analyses it serves."""

    goal: str
    method: str  # fgsm | bim | pgd | random
    epsilon: float
    alpha: float
    steps: int
    random_start: bool
    sweep_epsilon: bool = False
    sweep_alpha: bool = False
    sweep_steps: bool = False
    headline: bool = False

    @property
    def key(self) -> str:
        """A stable name, e.g. ``untargeted/pgd/e0.03/a0.0075/s20``."""
        if self.method == NULL:
            return f"{self.goal}/{NULL}/e{self.epsilon:g}"
        return f"{self.goal}/{self.method}/e{self.epsilon:g}/a{self.alpha:g}/s{self.steps}"

    @property
    def alpha_fraction(self) -> float:
        return self.alpha / self.epsilon

    @property
    def label(self) -> str:
        """As paper 004 names it: FGSM, BIM-20, PGD-40, random ±ε."""
        if self.method == NULL:
            return "random ±ε"
        if self.method == "fgsm":
            return "FGSM"
        return f"{self.method.upper()}-{self.steps}"

    def as_row(self) -> dict[str, Any]:
        return {"setting": self.key, **asdict(self), "alpha_fraction": self.alpha_fraction,
                "label": self.label}


def _alpha(method: str, eps: float, fraction: float) -> float:
    return eps if method == "fgsm" else round(fraction * eps, 12)


def settings_from_config(cfg: dict[str, Any]) -> list[Setting]:
    """Every setting of one job, in a fixed order (the config's ``attacks.evasion`` section)."""
    eps0, frac0 = float(cfg["epsilon"]), float(cfg["alpha_fraction"])
    steps = sorted(int(s) for s in cfg["steps"])
    few, most = steps[0], steps[-1]
    flags: dict[tuple, dict[str, bool]] = {}

    def add(goal: str, method: str, eps: float, fraction: float, n: int, **tags: bool) -> None:
        alpha = _alpha(method, eps, fraction)
        key = (goal, method, float(eps), alpha, 1 if method == "fgsm" else n,
               method == "pgd")
        entry = flags.setdefault(key, {})
        for tag, on in tags.items():
            entry[tag] = entry.get(tag, False) or on

    for method in cfg["attacks"]:
        for eps in cfg["epsilons"]:
            add("untargeted", method, eps, frac0, few, sweep_epsilon=True)
        for n in steps if method in ITERATIVE else [1]:
            add("untargeted", method, eps0, frac0, n, sweep_steps=True)
        if method in ITERATIVE:
            for frac in cfg["alpha_fractions"]:
                add("untargeted", method, eps0, frac, few, sweep_alpha=True)
    headline = next((m for m in ("pgd", "bim", "fgsm") if m in cfg["attacks"]), None)
    if headline is not None:
        add("untargeted", headline, eps0, frac0, most, headline=True)
    if cfg["targeted"]["enabled"]:
        for method in cfg["attacks"]:
            add("targeted", method, eps0, frac0, few)
    out = [Setting(goal=k[0], method=k[1], epsilon=k[2], alpha=k[3], steps=k[4],
                   random_start=k[5], **tags) for k, tags in flags.items()]
    out += [Setting("untargeted", NULL, float(eps), float(eps), 0, False,
                    sweep_epsilon=True, sweep_steps=eps == eps0, headline=eps == eps0)
            for eps in cfg["epsilons"]]
    if cfg["targeted"]["enabled"]:
        out.append(Setting("targeted", NULL, eps0, eps0, 0, False))
    return out
