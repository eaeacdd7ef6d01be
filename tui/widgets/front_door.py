"""The front door: every balancer in front of the instances, its role and state, and who holds the service address.

Clients know one address. Behind it there is one balancer (a single point of failure however many instances
stand behind it) or a pair. One line per balancer::

     front door  lb1  ○ –       ✖ CRASHED        0/s  exit status -9
                 lb2  ◉ MASTER  ● running       31/s  holds 127.0.0.1:40123  pid 4243

``◉`` holds the service address (clients reach it), ``○`` stands by, ``⊗`` is a master that cannot take the
address because the other one holds it (split brain on one host: the kernel lets only one listen). The selected
balancer (``l`` cycles; or click its line), the target of the front-door keys, has its name in reverse video.

:func:`door_label` is the flow's "LB" box: the name of the balancer clients reach, ``no LB`` while none holds the
address (a takeover in progress), ``2 MASTERS`` while both claim it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual.events import Click
from textual.geometry import Size
from textual.widget import Widget

from spofkit.policy.pair import MASTER
from spofkit.status import BalancerStatus
from tui.messages import BalancerSelected
from tui.widgets.palette import (
    BALANCER_BLOCKED,
    BALANCER_CRASHED,
    BALANCER_RUNNING,
    CYAN,
    DIM,
    GREEN,
    RED,
    ROLE_COLOUR,
    WHITE,
    YELLOW,
    balancer_state_look,
)

LABEL = " front door "
ROLE_WIDTH = 7  # "MASTER", "BACKUP", "ACTIVE", "SINGLE", "STOPPED"
STATE_WIDTH = 13  # "● ADVERT LOSS"
ALONE = "  a single point of failure"  # said of a lab's only balancer, where there is room


def holds_address(balancer: BalancerStatus) -> bool:
    """Does clients' traffic reach ``balancer``? It holds the service address (a crashed one holds nothing)."""
    return balancer.address is not None and balancer.state != BALANCER_CRASHED


def holders(balancers: Sequence[BalancerStatus]) -> list[BalancerStatus]:
    return [b for b in balancers if holds_address(b)]


def split_brain(balancers: Sequence[BalancerStatus]) -> bool:
    """Both balancers of an active-passive pair are master: one holds the address, the other is blocked."""
    masters = [b for b in balancers if b.role == MASTER and b.state != BALANCER_CRASHED]
    return len(masters) > 1 and any(b.state == BALANCER_BLOCKED for b in masters)


def door_label(balancers: Sequence[BalancerStatus]) -> tuple[str, str]:
    """The flow's balancer box: ``(text, colour)``. One balancer is ``LB`` as ever, red when it cannot answer."""
    if len(balancers) <= 1:
        state = balancers[0].state if balancers else BALANCER_RUNNING
        return " LB ", balancer_state_look(state)[1] if state != BALANCER_RUNNING else WHITE
    if split_brain(balancers):
        return " 2 MASTERS ", RED
    serving = holders(balancers)
    if not serving:
        return " no LB ", RED
    colour = WHITE if all(b.state == BALANCER_RUNNING for b in serving) else balancer_state_look(serving[0].state)[1]
    return " " + "+".join(b.name for b in serving) + " ", colour


def balancer_line(
    balancer: BalancerStatus,
    rate: float,
    *,
    selected: bool,
    first: bool,
    alone: bool,
    width: int = 200,
) -> Text:
    """One balancer's line of the strip (``first``: it carries the strip's label; ``alone``: the only one, said
    so if the line has room in ``width`` columns)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(LABEL if first else " " * len(LABEL), f"bold {WHITE}" if first else "")
    glyph, colour, label = balancer_state_look(balancer.state)
    crashed = balancer.state == BALANCER_CRASHED
    text.append(f" {balancer.name} ", f"bold {WHITE} reverse" if selected else f"bold {WHITE}")
    if balancer.state == BALANCER_BLOCKED:
        text.append(" ⊗ ", f"bold {RED}")
    elif holds_address(balancer):
        text.append(" ◉ ", f"bold {GREEN}")
    else:
        text.append(" ○ ", DIM)
    # A crashed balancer has no role, whatever it was (an in-process one still says what it was when it died).
    role = "–" if crashed else balancer.role.upper()
    text.append(f"{role:<{ROLE_WIDTH}} ", f"bold {ROLE_COLOUR.get(balancer.role, WHITE)}" if not crashed else DIM)
    text.append(f"{glyph} {label:<{STATE_WIDTH - 2}}", f"bold {colour}")
    text.append(f"{rate:>5.0f}/s", f"bold {CYAN}" if rate else DIM)
    if holds_address(balancer):
        text.append(f"  holds {_host_port(balancer.address or '')}", GREEN)
    elif balancer.state == BALANCER_BLOCKED:
        text.append(f"  {balancer.note or 'wants the address'}", f"bold {RED}")
    elif not crashed:
        text.append("  standby", DIM)
    if balancer.pid:
        text.append(f"  pid {balancer.pid}", DIM)
    # A note says why a balancer is not simply running (a running one's may be left over from before).
    if balancer.note and balancer.state not in (BALANCER_RUNNING, BALANCER_BLOCKED):
        text.append(f"  {balancer.note}", DIM)
    if alone and text.cell_len + len(ALONE) <= width:
        text.append(ALONE, YELLOW if crashed else DIM)
    return text


def _host_port(url: str) -> str:
    return url.split("://", 1)[-1]


class FrontDoorStrip(Widget):
    """One line per balancer of the latest status (one line for a single balancer). See the module docstring."""

    DEFAULT_CSS = """
    FrontDoorStrip { height: auto; }
    """

    def __init__(self, rate_of: Callable[[str], float], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rate_of = rate_of  # requests/s a balancer answered, now (the model's count)
        self.balancers: list[BalancerStatus] = []
        self.service_url = ""
        self.selected: str | None = None
        self.plain = ""  # the text shown, without colours (for tests)

    def show(self, balancers: Sequence[BalancerStatus], service_url: str, selected: str | None) -> None:
        resized = len(balancers) != len(self.balancers)
        self.balancers, self.service_url, self.selected = list(balancers), service_url, selected
        self.refresh(layout=resized)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(1, len(self.balancers))

    def render(self) -> Text:
        if not self.balancers:  # a lab that does not report its balancers: only where clients go
            text = Text(no_wrap=True, overflow="ellipsis")
            text.append(LABEL, f"bold {WHITE}")
            text.append(f" {_host_port(self.service_url)}" if self.service_url else " waiting for the lab…", DIM)
        else:
            alone = len(self.balancers) == 1
            lines = [
                balancer_line(
                    b,
                    self.rate_of(b.name),
                    selected=b.name == self.selected and not alone,
                    first=i == 0,
                    alone=alone,
                    width=self.size.width,
                )
                for i, b in enumerate(self.balancers)
            ]
            text = Text("\n", no_wrap=True, overflow="ellipsis").join(lines)
        self.plain = text.plain
        return text

    def on_click(self, event: Click) -> None:
        if 0 <= event.y < len(self.balancers):
            self.post_message(BalancerSelected(self.balancers[event.y].name))
