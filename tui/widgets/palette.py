"""Colours that read on a projector: bright, saturated, on black, one meaning each.

Green means serving, red means failing, yellow means "saved by a retry" or "in transition", magenta means
ejected by the balancer, grey means out of the game (draining, removed). The same meaning everywhere: lane
marks, panel borders, log lines.
"""

from __future__ import annotations

import functools

from rich.style import Style

from spofkit.balancer_node import ACTIVE, SINGLE
from spofkit.policy.pair import BACKUP, MASTER, STOPPED
from spofkit.status import DOWN, DRAINING, EJECTED, FALLING, RISING, UP

GREEN = "#5fff5f"
RED = "#ff5f5f"
YELLOW = "#ffd75f"
CYAN = "#5fd7ff"
MAGENTA = "#ff87ff"
GREY = "#a8a8a8"
DIM = "#6c6c6c"
WHITE = "#ffffff"
BLACK = "#000000"
PANEL = "#1c1c1c"  # a raised surface on black: scrollbar tracks, pop-ups

# What each state of :mod:`spofkit.status` looks like: (glyph, colour). The states are spofkit's; only their
# look is decided here (a test checks that every state has one).
STATE_LOOK: dict[str, tuple[str, str]] = {
    UP: ("●", GREEN),
    FALLING: ("◑", YELLOW),
    DOWN: ("✖", RED),
    RISING: ("◐", CYAN),
    EJECTED: ("⊘", MAGENTA),
    DRAINING: ("◌", GREY),
}

# A request's outcome: (glyph while it travels, colour).
OUTCOME_LOOK: dict[str, tuple[str, str]] = {
    "served": ("●", GREEN),
    "retried": ("◆", YELLOW),
    "failed": ("■", RED),
}

TONE_COLOUR = {"good": GREEN, "bad": RED, "warn": YELLOW, "info": CYAN}

# A balancer's state, as :class:`spofkit.status.BalancerStatus` spells it: (glyph, colour, how it is shown).
# Running is green; one that cannot answer (hung, crashed) or cannot take the address (blocked) is red; one whose
# adverts are cut still serves, but split brain is on its way: yellow.
BALANCER_RUNNING = "running"
BALANCER_CRASHED = "crashed"
BALANCER_BLOCKED = "blocked"
BALANCER_STATE_LOOK: dict[str, tuple[str, str, str]] = {
    BALANCER_RUNNING: ("●", GREEN, "running"),
    "hang": ("◑", RED, "HANG"),
    "advert_loss": ("≠", YELLOW, "ADVERT LOSS"),
    BALANCER_BLOCKED: ("⊗", RED, "BLOCKED"),
    BALANCER_CRASHED: ("✖", RED, "CRASHED"),
}
# A balancer's role (spofkit.policy.pair, spofkit.balancer_node): the one holding the address is bright.
ROLE_COLOUR = {MASTER: WHITE, ACTIVE: WHITE, SINGLE: WHITE, BACKUP: GREY, STOPPED: DIM}


def state_look(state: str) -> tuple[str, str]:
    return STATE_LOOK.get(state, ("?", WHITE))


def balancer_state_look(state: str) -> tuple[str, str, str]:
    """``(glyph, colour, label)`` of a balancer's state; an unknown one is shown as it is spelled, in white."""
    return BALANCER_STATE_LOOK.get(state, ("?", WHITE, state.upper()))


@functools.lru_cache(maxsize=256)
def style(colour: str, *, bold: bool = False, reverse: bool = False, dim: bool = False) -> Style:
    return Style(color=colour, bold=bold, reverse=reverse, dim=dim)


def state_label(state: str, successes: int = 0, rise: int = 0, failures: int = 0, fall: int = 0) -> str:
    """``UP``, ``DOWN``, ``RISING 1/2``, ``FALLING 2/3``, ``EJECTED``, ``DRAINING``."""
    if state == RISING and rise:
        return f"{state.upper()} {successes}/{rise}"
    if state == FALLING and fall:
        return f"{state.upper()} {failures}/{fall}"
    return state.upper()
