"""Prompt template sets, by name. Every template holds ``{}`` where the class name goes."""

from __future__ import annotations

from vlserve.errors import InvalidInput


def _from_open_clip(name: str) -> list[str]:
    from open_clip import zero_shot_metadata as meta

    return [t("{}") for t in getattr(meta, name)]


def template_set(name: str) -> list[str]:
    """``openai`` (the 80 ImageNet templates of Radford et al.), ``simple`` (open_clip's 7 simple
    ones), ``photo`` ("a photo of a {}.") or ``plain`` ("{}")."""
    if name == "openai":
        return _from_open_clip("OPENAI_IMAGENET_TEMPLATES")
    if name == "simple":
        return _from_open_clip("SIMPLE_IMAGENET_TEMPLATES")
    if name == "photo":
        return ["a photo of a {}."]
    if name == "plain":
        return ["{}"]
    raise InvalidInput(f"unknown template set {name!r}; known: {', '.join(TEMPLATE_SETS)}")


TEMPLATE_SETS = ("openai", "simple", "photo", "plain")


def resolve_templates(values: list[str] | None, default: list[str]) -> list[str]:
    """Names of sets and/or literal templates -> a validated template list."""
    if not values:
        return default
    out: list[str] = []
    for v in values:
        if v in TEMPLATE_SETS:
            out.extend(template_set(v))
        elif "{}" in v:
            out.append(v)
        else:
            raise InvalidInput(f"template {v!r} has no '{{}}' placeholder for the class name "
                               f"(and is not a template set: {', '.join(TEMPLATE_SETS)})")
    return out
