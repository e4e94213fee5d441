"""Every secret value the tests use, and the scan that fails the run if one reaches captured output."""

from __future__ import annotations

SECRETS: dict[str, str] = {}


def register(name: str, value: str) -> str:
    """Record a secret so the end-of-session scan looks for it; returns the value for convenience."""
    SECRETS[name] = value
    return value


def scan_for_secrets(texts: list[str]) -> list[tuple[str, str]]:
    hits: list[tuple[str, str]] = []
    for name, value in SECRETS.items():
        if not value or len(value) < 6:
            continue
        for text in texts:
            idx = text.find(value)
            if idx >= 0:
                hits.append((name, text[max(0, idx - 60): idx].replace("\n", " ")))
                break
    return hits
