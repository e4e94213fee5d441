"""Exceptions of the engine. Every message is redacted before it is built into an exception."""

from __future__ import annotations

from airflow_export_providers.core.redact import redact_text


class ExportError(Exception):
    """Base class: an export could not be done; the message is safe to log."""

    def __init__(self, message: str) -> None:
        super().__init__(redact_text(message))


class ExportInputError(ExportError, ValueError):
    """A parameter is invalid; the message names the field and the accepted values."""


class VendorHTTPError(ExportError):
    """The vendor answered with an error status after the retry policy gave up (or must not retry)."""

    def __init__(self, vendor: str, status: int, message: str, url: str = "", retry_after: float | None = None) -> None:
        self.vendor = vendor
        self.status = status
        self.url = redact_text(url)
        self.retry_after = retry_after
        super().__init__(f"{vendor}: HTTP {status}: {message}" + (f" ({self.url})" if url else ""))


class VendorAuthError(VendorHTTPError):
    """Credentials were rejected (after one refresh where the vendor has tokens)."""


class TransientHTTPError(ExportError):
    """Network-level failure (reset, timeout) that outlived the retry policy."""


class SubmitOutcomeUnknown(ExportError):
    """A non-idempotent submit failed in a way that may still have reached the vendor."""


class ExportJobFailed(ExportError):
    """The vendor reported the export job as failed."""


class QuotaExceeded(ExportError):
    """The vendor refused a submit for quota; ``retry_at`` (epoch seconds) says when to try again."""

    def __init__(self, message: str, retry_at: float) -> None:
        self.retry_at = retry_at
        super().__init__(message)


class VerificationError(ExportError):
    """A landed file does not match what the vendor announced (size, rows or checksum)."""
