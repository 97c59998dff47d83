"""The claims a study tests, declared as data, and how its final returns are scored.

A study config may declare ``claims:``, a list; ``rlnorm report`` gives each a verdict per task and over the
tasks pooled (docs/method.md#verdicts). Three shapes::

    claims:
      - name: BN lowers the final return          # a pairwise claim: X against Y on one quantity
        x: bn
        y: none
        quantity: final return
        direction: less                           # greater, less, or (non-inferiority) not less, not greater
      - name: WN + mean-only BN is gentler than BN
        all_of:                                   # supported only when every part is (intersection-union);
          - {x: wn+mobn, y: bn, quantity: relative probe noise, direction: less}    # any_of: when a part is,
          - {x: wn+mobn, y: bn, quantity: final return, direction: not less}        # after correction
      - name: More ghost batches, lower return    # a trend claim: the quantity against an ordered list
        variants: [bn, bn-g4, bn-g16]
        quantity: final return
        direction: less                           # falls along the list
        tasks: [dqn/CartPole-v1]                  # optional: the tasks it is tested on (default: every task
                                                  #   that ran its variants)
    scores:                                       # how final returns are normalized (random policy 0, reference 1)
      reference: {Pendulum-v1: -200}              #   per env id or algo/env (default: the env's reward
                                                  #   threshold, else the best variant's IQM on the task)
      failure_below: 0.5                          #   a run fails when its normalized final return is below this

``not less`` is non-inferiority: X is not worse than Y by more than a margin on P(X > Y) (``margin``, default
0.35; ``not greater``: 0.65). A config without claims is tested on :data:`DEFAULT_CLAIMS`.

Torch-free: the report parses the claims again from ``study.json``, or from a config given to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rlnorm.study.checks import ConfigError, check_keys, check_unique, did_you_mean, number, string

QUANTITIES = {
    "final return": "the mean of the last evaluations of a run (docs/method.md#metrics)",
    "failure rate": "the fraction of runs whose normalized final return is below the failure threshold",
    "spread among successes": "the across-seed spread of the normalized final returns of the runs that did not fail",
    "within-run dispersion": "the dispersion of a run's normalized learning curve over time (failing runs kept)",
    "relative probe noise": "the probe's minibatch noise at the outputs over their spread across states, a run's "
                            "median over its probe points",
    "noise kurtosis": "the excess kurtosis of the probe's minibatch noise, over the normalized layers",
    "training time": "seconds of training per run (the bench's paired repeats when recorded)",
}
"""What a claim can compare, each one number per run (the failure rate: failed or not)."""
Direction = Literal["greater", "less", "not less", "not greater"]
DIRECTIONS: tuple[str, ...] = ("greater", "less", "not less", "not greater")
DEFAULT_MARGIN = {"not less": 0.35, "not greater": 0.65}
"""Non-inferiority margins on P(X > Y): "not worse" means the interval excludes this bound."""
PART_KEYS = ("x", "y", "variants", "quantity", "direction", "margin")
CLAIM_KEYS = ("name", *PART_KEYS, "all_of", "any_of", "tasks")
SCORE_KEYS = ("reference", "failure_below")
DEFAULT_FAILURE_BELOW = 0.5


@dataclass(frozen=True)
class Pairwise:
    """X against Y on one quantity.

    :param x: variant X
    :param y: variant Y
    :param quantity: a key of :data:`QUANTITIES`
    :param direction: where the claim puts X from Y: greater, less, or not less / not greater (non-inferiority)
    :param margin: the non-inferiority bound on P(X > Y), None for greater and less
    """

    x: str
    y: str
    quantity: str
    direction: Direction
    margin: float | None = None

    @property
    def variants(self) -> tuple[str, ...]:
        """:return: (X, Y)"""
        return self.x, self.y


@dataclass(frozen=True)
class Trend:
    """A monotone trend of one quantity along an ordered list of variants (the noise dose: ghost batches).

    :param variants: the variants in order
    :param quantity: a key of :data:`QUANTITIES`
    :param direction: greater (rises along the list) or less (falls)
    """

    variants: tuple[str, ...]
    quantity: str
    direction: Literal["greater", "less"]


Part = Pairwise | Trend


@dataclass(frozen=True)
class Claim:
    """A declared claim.

    :param name: how the report calls it
    :param parts: one part, or the parts of a compound claim
    :param combine: ``one`` (a single part), ``all_of`` or ``any_of``
    :param tasks: the ``algo/env`` tasks it is tested on; empty: every task that ran its variants
    """

    name: str
    parts: tuple[Part, ...]
    combine: Literal["one", "all_of", "any_of"] = "one"
    tasks: tuple[str, ...] = ()

    @property
    def variants(self) -> tuple[str, ...]:
        """:return: every variant its parts name, in order"""
        return tuple(dict.fromkeys(v for part in self.parts for v in part.variants))


@dataclass(frozen=True)
class Scores:
    """How final returns are normalized per task: a uniform-random policy's return is 0, the reference 1.

    :param reference: reference returns, keyed by env id or ``algo/env`` (the latter wins)
    :param failure_below: a run fails when its normalized final return is below this
    """

    reference: dict[str, float] = field(default_factory=dict)
    failure_below: float = DEFAULT_FAILURE_BELOW

    def reference_for(self, algo: str, env_id: str) -> float | None:
        """:return: the declared reference return of a task, None if none is declared"""
        return self.reference.get(f"{algo}/{env_id}", self.reference.get(env_id))


def parse_claims(raw: Any, tasks: dict[str, list[str]], where: str = "claims") -> tuple[Claim, ...]:
    """
    Check declared claims against the variants each task runs.

    :param raw: the ``claims`` list as YAML loads it
    :param tasks: ``algo/env`` -> the variants it runs
    :param where: the list's place in the config, for messages
    :return: the claims
    :raises ConfigError: naming a bad key, quantity, direction, margin, task or variant, or variants that run
        together on no task
    """
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list of claims, got {raw!r}")
    claims = [_parse_claim(item, tasks, f"{where}[{i}]") for i, item in enumerate(raw)]
    check_unique([claim.name for claim in claims], f"{where} names")
    return tuple(claims)


def _parse_claim(raw: Any, tasks: dict[str, list[str]], where: str) -> Claim:
    check_keys(raw, CLAIM_KEYS, where, required=("name",))
    name = string(raw["name"], f"{where}.name")
    where = f"{where} ({name})"
    shapes = [key for key in ("all_of", "any_of") if key in raw]
    if shapes and any(key in raw for key in PART_KEYS):
        raise ConfigError(f"{where}: a compound claim has {shapes[0]} and no {', '.join(PART_KEYS)} of its own")
    if len(shapes) > 1:
        raise ConfigError(f"{where}: give all_of or any_of, not both")
    chosen = tuple(string(task, f"{where}.tasks") for task in raw.get("tasks", []) or [])
    for task in chosen:
        if task not in tasks:
            raise ConfigError(f"{where}.tasks: unknown task {task!r}{did_you_mean(task, list(tasks))}; "
                              f"tasks: {', '.join(tasks)}")
    if shapes:
        items = raw[shapes[0]]
        if not isinstance(items, list) or len(items) < 2:
            raise ConfigError(f"{where}.{shapes[0]}: expected a list of at least 2 parts, got {items!r}")
        parts = tuple(_parse_part(item, f"{where}.{shapes[0]}[{i}]") for i, item in enumerate(items))
        combine = shapes[0]
    else:
        parts, combine = (_parse_part({k: v for k, v in raw.items() if k in PART_KEYS}, where),), "one"
    claim = Claim(name, parts, combine, chosen)
    on = {task: variants for task, variants in tasks.items() if not chosen or task in chosen}
    known = sorted({variant for variants in on.values() for variant in variants})
    for variant in claim.variants:
        if variant not in known:
            raise ConfigError(f"{where}: unknown variant {variant!r}{did_you_mean(variant, known)}; "
                              f"variants: {', '.join(known)}")
    if not any(set(claim.variants) <= set(variants) for variants in on.values()):
        raise ConfigError(f"{where}: variants {', '.join(claim.variants)} run together on no task")
    return claim


def _parse_part(raw: Any, where: str) -> Part:
    check_keys(raw, PART_KEYS, where, required=("quantity", "direction"))
    quantity = raw["quantity"]
    if quantity not in QUANTITIES:
        raise ConfigError(f"{where}.quantity: unknown quantity {quantity!r}{did_you_mean(quantity, list(QUANTITIES))};"
                          f" quantities: {', '.join(QUANTITIES)}")
    direction = raw["direction"]
    if direction not in DIRECTIONS:
        raise ConfigError(f"{where}.direction: {direction!r} is not one of {', '.join(DIRECTIONS)}")
    if "variants" in raw:
        if "x" in raw or "y" in raw or "margin" in raw:
            raise ConfigError(f"{where}: a trend claim has variants, and no x, y or margin")
        variants = raw["variants"]
        if not isinstance(variants, list) or len(variants) < 2:
            raise ConfigError(f"{where}.variants: expected a list of at least 2 variants in order, got {variants!r}")
        names = tuple(string(variant, f"{where}.variants") for variant in variants)
        check_unique(list(names), f"{where}.variants")
        if direction not in ("greater", "less"):
            raise ConfigError(f"{where}.direction: a trend is greater or less, got {direction!r}")
        return Trend(names, quantity, direction)
    for key in ("x", "y"):
        if key not in raw:
            raise ConfigError(f"{where}: missing key {key!r}; a claim has x and y, or variants (a trend)")
    x, y = string(raw["x"], f"{where}.x"), string(raw["y"], f"{where}.y")
    if x == y:
        raise ConfigError(f"{where}: x and y are the same variant {x!r}")
    margin = None
    if direction in DEFAULT_MARGIN:
        margin = number(raw.get("margin", DEFAULT_MARGIN[direction]), f"{where}.margin")
        low, high = (0.0, 0.5) if direction == "not less" else (0.5, 1.0)
        if not low < margin < high:
            raise ConfigError(f"{where}.margin: {margin} is outside ({low}, {high}), where a {direction!r} "
                              "margin on P(X > Y) lies")
    elif "margin" in raw:
        raise ConfigError(f"{where}.margin: a margin is for direction 'not less' or 'not greater' "
                          f"(non-inferiority), not {direction!r}")
    return Pairwise(x, y, quantity, direction, margin)


def parse_scores(raw: Any, tasks: dict[str, list[str]], where: str = "scores") -> Scores:
    """
    :param raw: the ``scores`` mapping as YAML loads it
    :param tasks: ``algo/env`` -> the variants it runs, to check the reference's keys
    :param where: its place in the config
    :return: the settings
    :raises ConfigError: naming a key that is neither a task's env id nor a task, or a bad number
    """
    check_keys(raw, SCORE_KEYS, where)
    reference = raw.get("reference", {}) or {}
    if not isinstance(reference, dict):
        raise ConfigError(f"{where}.reference: expected a mapping of env id (or algo/env) -> return, got {reference!r}")
    keys = [*tasks, *dict.fromkeys(task.split("/", 1)[1] for task in tasks)]
    for key in reference:
        if key not in keys:
            raise ConfigError(f"{where}.reference: {key!r} is no env id or task of this study{did_you_mean(key, keys)}")
    failure_below = number(raw.get("failure_below", DEFAULT_FAILURE_BELOW), f"{where}.failure_below")
    if not 0 < failure_below <= 1:
        raise ConfigError(f"{where}.failure_below: {failure_below} is not a normalized score in (0, 1] (a random "
                          "policy scores 0, the reference 1)")
    return Scores({k: number(v, f"{where}.reference.{k}") for k, v in reference.items()}, failure_below)


DEFAULT_CLAIMS = [
    {"name": "BN lowers the final return", "x": "bn", "y": "none", "quantity": "final return", "direction": "less"},
    {
        "name": "BN raises return variance",
        "any_of": [
            {"x": "bn", "y": "none", "quantity": "failure rate", "direction": "greater"},
            {"x": "bn", "y": "none", "quantity": "spread among successes", "direction": "greater"},
        ],
    },
    {
        "name": "WN + mean-only BN is gentler than BN",
        "all_of": [
            {"x": "wn+mobn", "y": "bn", "quantity": "relative probe noise", "direction": "less"},
            {"x": "wn+mobn", "y": "bn", "quantity": "final return", "direction": "not less"},
        ],
    },
    {"name": "Mean-only BN's noise is milder than BN's", "x": "mobn", "y": "bn", "quantity": "relative probe noise",
     "direction": "less"},
    {"name": "WN is cheaper to compute than BN", "x": "wn", "y": "bn", "quantity": "training time",
     "direction": "less"},
]
"""The default claims, the project's starting questions (docs/method.md#verdicts), tested when a config declares
none, on the tasks that ran their variants."""


def default_claims(tasks: dict[str, list[str]]) -> tuple[Claim, ...]:
    """:param tasks: ``algo/env`` -> the variants it runs
    :return: the claims of :data:`DEFAULT_CLAIMS` whose variants run together on some task"""
    claims = []
    for raw in DEFAULT_CLAIMS:
        try:
            claims.append(_parse_claim(raw, tasks, "default claim"))
        except ConfigError:
            continue  # its variants are not in this study
    return tuple(claims)
