"""``card_label`` on the public shapes that name a card (taps and payouts).

A mixin, so :class:`~tracker.models.TapPublic` and :class:`~tracker.models.PayoutPublic` get
the same computed field from :mod:`tracker.labels` instead of each spelling the rule out.
"""

from pydantic import computed_field
from sqlmodel import SQLModel

from tracker import labels


class CardLabelled(SQLModel):
    """Adds ``card_label``: the alias, else the short UID (``04A1…E5F6``)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def card_label(self) -> str | None:
        """How lists name the card; the full ``card_uid`` goes on hover and the copy button."""
        # A tap whose UID is unproven (bad MAC, foreign card) is never named by the card's alias.
        alias = None if getattr(self, "trust_note", None) else getattr(self, "card_alias", None)
        return labels.card_label(getattr(self, "card_uid", None), alias)
