"""Request and response bodies of the HTTP server (docs/serving.md), validated by pydantic."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

__all__ = [
    "AddedItemsReply",
    "Health",
    "Id",
    "Item",
    "ItemInfo",
    "EventRequest",
    "NewItem",
    "NewItems",
    "Problem",
    "RecommendRequest",
    "Recommendations",
]

MAX_LIST = 10_000  # items in one history, exclude or candidate list
# an external id: 1..256 printable characters (no control characters)
Id = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
IdList = Annotated[list[Id], Field(max_length=MAX_LIST)]


class RecommendRequest(BaseModel):
    """Top-k for a known ``user`` or after the chronological history ``items``."""

    model_config = ConfigDict(extra="forbid")
    user: Id | None = Field(None, description="A user id of the training data.")
    items: IdList | None = Field(None, description="Item ids, oldest first (a new user).")
    k: int = Field(10, ge=1, description="How many items.")
    exclude: IdList = Field([], description="Item ids never to recommend.")
    exclude_history: bool = Field(True, description="Leave out the items of the history.")
    candidates: IdList | None = Field(None, description="Rank only these items.")

    @model_validator(mode="after")
    def _one_of(self) -> RecommendRequest:
        if (self.user is None) == (self.items is None):
            raise ValueError("give exactly one of 'user' and 'items'")
        return self


class EventRequest(BaseModel):
    """One interaction of a user; the answer is their top-k after it."""

    model_config = ConfigDict(extra="forbid")
    item: Id
    k: int = Field(10, ge=1)
    exclude: IdList = []


class Item(BaseModel):
    item: str
    score: float
    rank: int
    title: str | None = None


class Recommendations(BaseModel):
    user: str | None = None
    history_length: int
    recommendations: list[Item]


class ItemInfo(BaseModel):
    item: str
    title: str | None
    attributes: dict[str, str]


Text = Annotated[str, StringConstraints(max_length=10_000)]
FieldName = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class NewItem(BaseModel):
    """A catalog item to add: its id and text (``title`` and/or other attributes; the model
    reads those of the run's ``text.fields``)."""

    model_config = ConfigDict(extra="forbid")
    item: Id = Field(description="The new item's id (not in the catalog yet).")
    title: Text | None = Field(None, description="Its title (the `title` attribute).")
    attributes: dict[FieldName, Text] = Field(
        {}, max_length=100, description="Other text attributes, e.g. brand or categories."
    )

    @model_validator(mode="after")
    def _title_once(self) -> NewItem:
        if self.title is not None and "title" in self.attributes:
            raise ValueError("give the title once: as 'title' or in 'attributes', not both")
        return self

    def text(self) -> dict[str, str]:
        """All its attributes, the title included."""
        title = {} if self.title is None else {"title": self.title}
        return title | dict(self.attributes)


class NewItems(BaseModel):
    """Items to add to the catalog from their text (cold start)."""

    model_config = ConfigDict(extra="forbid")
    items: Annotated[list[NewItem], Field(min_length=1, max_length=MAX_LIST)]

    @model_validator(mode="after")
    def _distinct(self) -> NewItems:
        seen: set[str] = set()
        for new in self.items:
            if new.item in seen:
                raise ValueError(f"item {new.item!r} is given twice")
            seen.add(new.item)
        return self


class AddedItemsReply(BaseModel):
    added: list[str] = Field(description="The new items' ids, in the order given.")
    items: int = Field(description="Items in the catalog now.")


class Health(BaseModel):
    status: str
    model: str
    items: int
    sessions: int


class Problem(Exception):
    """An error answered as ``{"error": code, "detail": detail}`` with ``status``."""

    def __init__(self, status: int, code: str, detail: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
