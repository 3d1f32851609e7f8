"""The specialists a plan assigns work to, and the profile each one's tasks are built from.

``general`` is the live config's profile (the one experiments and the optimizer tune).
The others take its sampling settings and version and bring their own role: a system
prompt written for what their subtask asks of them.
"""

from __future__ import annotations

from collections.abc import Mapping

from agents.config import SpecialistProfile

ROLES: Mapping[str, str] = {
    "reasoning": (
        "You are a careful reasoner. Work through the problem step by step, check each "
        "step, and end with a clear conclusion."
    ),
    "retrieval": (
        "You gather facts. List only facts, definitions and figures that are well "
        "established or stated in the sources given, one per line; say when you are unsure."
    ),
    "qa": (
        "You review answers before they are written. List the concrete mistakes an answer "
        "is likely to make, one per line, specific to the request."
    ),
    "synthesis": (
        "You write the final answer from notes. Answer the original request directly and "
        "completely; where the notes disagree, trust the listed facts."
    ),
}
"""The system prompt of every specialist other than ``general``."""


def profile_for(general: SpecialistProfile, specialist: str) -> SpecialistProfile:
    """The profile of ``specialist``'s tasks: ``general`` itself, or its settings with
    the specialist's name and role."""
    role = ROLES.get(specialist)
    if role is None:
        return general
    return general.model_copy(update={"name": specialist, "system_prompt": role})
