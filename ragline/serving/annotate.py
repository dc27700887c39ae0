"""The annotation page of `ragline serve` (/annotate): people label queued answers as faithful,
relevant and correct (yes / partly / no) with a note, one item at a time, from the keyboard.

The page itself carries no data; its script reads the items and saves labels through two keyed
JSON routes (Authorization: Bearer <key>, as every /v1 route), and the annotator is the key's name
(a name the page gives is taken only without auth, `ragline serve --no-auth`)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.params import Depends
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from ragline.evaluation.annotation import (
    AnnotationError,
    annotator_name,
    items_for,
    make_label,
    open_count,
    save_label,
)
from ragline.safe_text import printable
from ragline.storage.db import Database

NO_AUTH_ANNOTATOR = "local"  # the annotator of `ragline serve --no-auth` when the page names none
MAX_ITEMS = 200  # items sent to the page at once; it asks again when they are done


class LabelRequest(BaseModel):
    """One label from the page: yes / partly / no (or null: skipped) per judgement, and a note."""

    model_config = ConfigDict(extra="forbid")
    item_id: int = Field(ge=1, le=2**63 - 1)
    faithful: str | None = None
    relevant: str | None = None
    correct: str | None = None
    note: str = Field(default="", max_length=4000)
    annotator: str | None = None


def _annotator(request: Request, given: str | None) -> str:
    """The API key's name; a name given by the page only without auth (`ragline serve --no-auth`)."""
    key = getattr(request.state, "key", None)
    name = given.strip() if given is not None else ""
    if key is not None:
        if name and name != key.name:
            raise HTTPException(
                403,
                f"the annotator is the API key's name ({printable(key.name, 100)!r}); another name "
                f"({printable(name, 60)!r}) is accepted only by `ragline serve --no-auth`",
            )
        return key.name
    try:
        return annotator_name(name) if name else NO_AUTH_ANNOTATOR
    except AnnotationError as exc:
        raise HTTPException(422, str(exc)) from None


def _item_json(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "item_id": item["item_id"],
        "eval_set": item["eval_set"],
        "variant": item["variant"],
        "question_id": item["question_id"],
        "reasons": list(item["reasons"]),
        "question": item["question"],
        "answer": item["answer"],
        "reference": item["reference"],
        "context": [
            {"number": p.get("number"), "document": p.get("document"), "text": p.get("text")}
            for p in item["context"] or []
        ],
    }


def add_annotation_routes(app: FastAPI, *, db: Database, keyed: Sequence[Depends], errors: dict) -> None:
    """GET /annotate (the page), GET /annotate/items and POST /annotate/labels (keyed)."""

    @app.get("/annotate", tags=["annotation"], response_class=HTMLResponse, include_in_schema=False)
    def annotate_page() -> HTMLResponse:
        """The annotation page (no data in it: its script fetches the items with the key)."""
        nonce = secrets.token_urlsafe(16)
        return HTMLResponse(PAGE.replace("{nonce}", nonce), headers=page_headers(nonce))

    @app.get("/annotate/items", dependencies=list(keyed), responses=errors, tags=["annotation"])
    def annotation_items(request: Request, annotator: str | None = None) -> dict[str, Any]:
        """The items this annotator has yet to label (oldest first), and how many are open."""
        name = _annotator(request, annotator)
        with db.connection() as conn:
            items = items_for(conn, name, MAX_ITEMS)
            remaining = open_count(conn, name)
        return {"annotator": name, "open": remaining, "items": [_item_json(i) for i in items]}

    @app.post("/annotate/labels", dependencies=list(keyed), responses=errors, tags=["annotation"])
    def annotation_label(request: Request, body: LabelRequest) -> dict[str, Any]:
        """Save a label (this annotator's earlier label on the item is replaced)."""
        name = _annotator(request, body.annotator)
        try:
            label = make_label(
                body.item_id,
                name,
                faithful=body.faithful,
                relevant=body.relevant,
                correct=body.correct,
                note=body.note,
                source="web",
            )
            with db.connection() as conn:
                label_id = save_label(conn, label)
                remaining = open_count(conn, name)
        except AnnotationError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"label_id": label_id, "item_id": body.item_id, "annotator": name, "open": remaining}


def page_headers(nonce: str) -> dict[str, str]:
    """A strict policy: only this page's own script and style run, and it talks only to its server."""
    policy = (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    }


# The page's script puts every text from the database on it with textContent, never as HTML.
PAGE = (Path(__file__).with_name("annotate.html")).read_text(encoding="utf-8")
