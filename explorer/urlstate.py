"""The page's address as state: `/?study=NAME&trial=N` opens that study and trial, so a view can
be bookmarked, shared, or reloaded without losing what was open."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode


@dataclass(frozen=True)
class UrlRequest:
    """What the address asks for; `error` says why part of it was ignored."""

    study: str | None = None
    trial: int | None = None
    error: str | None = None


def parse_query(search: str | None) -> UrlRequest:
    """The study and trial of a `?study=NAME&trial=N` query; a bad trial number is an error."""
    query = parse_qs((search or "").lstrip("?"), keep_blank_values=True)
    study = (query.get("study") or [""])[-1].strip() or None
    raw = (query.get("trial") or [""])[-1].strip()
    if not raw:
        return UrlRequest(study)
    if not raw.isdigit():
        return UrlRequest(study, None, f"trial={raw!r} in the address is not a trial number "
                                       "(a whole number from 0).")
    if study is None:
        return UrlRequest(None, None, f"trial={raw} in the address needs a study=NAME too.")
    return UrlRequest(study, int(raw))


def query_for(study: str | None, trial: int | None) -> str:
    """The query that reopens `study` (and `trial`), or '' when nothing is open."""
    if not study:
        return ""
    fields: dict[str, object] = {"study": study}
    if trial is not None:
        fields["trial"] = trial
    return "?" + urlencode(fields)
