"""The promotion gate: which registered version is ``champion``.

Promotion moves aliases only (registry stages are deprecated): ``champion`` is
what serving loads, ``challenger`` marks a candidate that did not pass the gate.
The decision is made before anything is written, and moving an alias is one
registry call, so a failure at any point leaves the champion as it was. DVC and
Kubeflow both promote through ``promote`` here, so they give the same aliases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from captcha_ocr.config import MODEL_NAME, PromoteParams
from captcha_ocr.promotion.lock import PromotionError, promotion_lock

CHAMPION, CHALLENGER = "champion", "challenger"
__all__ = ["CHALLENGER", "CHAMPION", "Promotion", "PromotionError", "Scores", "decide", "promote"]


@dataclass(frozen=True)
class Scores:
    version: str
    exact_match: float
    cer: float
    test_split: str
    metrics_version: str
    # Where the scores come from when not the version's own tags (a rescore).
    basis: str = ""

    @classmethod
    def of(cls, mv: ModelVersion) -> Scores:
        try:
            return cls(
                version=str(mv.version),
                exact_match=float(mv.tags["test_exact_match"]),
                cer=float(mv.tags["test_cer"]),
                test_split=mv.tags.get("test_split_sha256", ""),
                metrics_version=mv.tags.get("metrics_version", ""),
            )
        except (KeyError, ValueError) as err:
            raise PromotionError(
                f"model version {mv.version} has no usable test metrics tags ({err})"
            ) from None


def evaluation_gate(exact_match: float, gate: PromoteParams) -> tuple[bool, str]:
    """Whether test scores allow promotion at all, whatever the champion (pure)."""
    if exact_match >= gate.min_exact_match:
        return True, (
            f"exact match {exact_match:.4f} >= promote.min_exact_match {gate.min_exact_match}"
        )
    return False, (
        f"exact match {exact_match:.4f} is below promote.min_exact_match {gate.min_exact_match}"
    )


def decide(candidate: Scores, champion: Scores | None, gate: PromoteParams) -> tuple[bool, str]:
    """Whether ``candidate`` should become champion, and why (pure)."""
    promoted, why = _decide(candidate, champion, gate)
    if champion is not None and champion.basis:
        why = f"{why} ({champion.basis})"
    return promoted, why


def _decide(candidate: Scores, champion: Scores | None, gate: PromoteParams) -> tuple[bool, str]:
    passes, why = evaluation_gate(candidate.exact_match, gate)
    if champion is None:
        return passes, f"first champion: {why}" if passes else why
    if candidate.version == champion.version:
        return False, f"version {candidate.version} is already champion"
    if (candidate.test_split, candidate.metrics_version) != (
        champion.test_split,
        champion.metrics_version,
    ):
        return False, "scored on another test split or metric definition than the champion"
    if not passes:
        return False, why
    if candidate.exact_match > champion.exact_match + gate.min_gain:
        return True, (
            f"exact match {candidate.exact_match:.4f} beats champion's "
            f"{champion.exact_match:.4f} by more than {gate.min_gain}"
        )
    if candidate.exact_match == champion.exact_match and candidate.cer < champion.cer:
        return True, (f"same exact match, lower CER ({candidate.cer:.4f} < {champion.cer:.4f})")
    return False, (
        f"not better than champion v{champion.version}: exact match "
        f"{candidate.exact_match:.4f} vs {champion.exact_match:.4f}, CER "
        f"{candidate.cer:.4f} vs {champion.cer:.4f}"
    )


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


@dataclass(frozen=True)
class Promotion:
    """What a promotion decided, and the aliases before and after it."""

    model: str
    candidate: str
    promoted: bool
    reason: str
    before: dict[str, str | None]
    after: dict[str, str | None]

    def as_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        rows = [("alias", "before", "after")] + [
            (alias, self.before[alias] or "-", self.after[alias] or "-")
            for alias in (CHAMPION, CHALLENGER)
        ]
        lines = [f"{a:<12}{b:>8}{c:>8}" for a, b, c in rows]
        verdict = "promoted" if self.promoted else "not promoted"
        lines.append(f"{self.model} v{self.candidate}: {verdict}: {self.reason}")
        return "\n".join(lines)


# (client, model name, candidate, champion) -> the champion's scores to decide
# with: its own, or its scores on the candidate's test split (rescoring.py).
Rescorer = Callable[[MlflowClient, str, Scores, Scores], Scores]


def promote(
    name: str,
    gate: PromoteParams,
    version: str | None = None,
    force: bool = False,
    reason: str | None = None,
    rescore: Rescorer | None = None,
) -> Promotion:
    """Move ``champion`` to the candidate if it passes the gate, else ``challenger``.

    Holds the model's promotion lock throughout, so a concurrent promotion
    decides against the champion this one leaves, never against a stale one.
    ``rescore`` scores the champion on the candidate's test split when the two
    were scored on different ones (``promotion.rescoring.on_equal_terms``).
    """
    if force and not reason:
        raise PromotionError("--force needs --reason: say why the gate is overridden")
    if not MODEL_NAME.fullmatch(name):
        # It goes into a search filter below; params.yaml is checked the same way.
        raise PromotionError(
            f"{name!r} is not a usable registered model name: letters, digits, '.', '_', '-'"
        )
    client = MlflowClient()
    with promotion_lock(client, name):
        return _promote(client, name, gate, version, force, reason, rescore)


def _promote(
    client: MlflowClient,
    name: str,
    gate: PromoteParams,
    version: str | None,
    force: bool,
    reason: str | None,
    rescore: Rescorer | None = None,
) -> Promotion:
    if version is None:
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise PromotionError(f"no versions of registered model {name!r}")
        version = str(max(int(v.version) for v in versions))
    try:
        candidate_mv = client.get_model_version(name, str(version))
    except MlflowException as err:
        raise PromotionError(f"{name!r} version {version}: {err.message}") from None
    champion_mv = alias_version(client, name, CHAMPION)
    before = {a: _version_of(client, name, a) for a in (CHAMPION, CHALLENGER)}

    candidate = Scores.of(candidate_mv)
    champion = Scores.of(champion_mv) if champion_mv else None
    if champion is not None and rescore is not None:
        champion = rescore(client, name, candidate, champion)
    promoted, why = decide(candidate, champion, gate)
    if force:
        promoted, why = True, f"forced: {reason}"
        client.set_model_version_tag(name, candidate.version, "promotion.forced_reason", reason)

    if promoted:
        client.set_registered_model_alias(name, CHAMPION, candidate.version)
        if before[CHALLENGER] == candidate.version:
            client.delete_registered_model_alias(name, CHALLENGER)
    elif candidate.version != before[CHAMPION]:
        client.set_registered_model_alias(name, CHALLENGER, candidate.version)
    client.set_model_version_tag(name, candidate.version, "promotion.decision", why)
    after = {a: _version_of(client, name, a) for a in (CHAMPION, CHALLENGER)}
    return Promotion(name, candidate.version, promoted, why, before, after)


def _version_of(client: MlflowClient, name: str, alias: str) -> str | None:
    mv = alias_version(client, name, alias)
    return str(mv.version) if mv else None
