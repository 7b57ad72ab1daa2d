"""The application's error hierarchy. ``api/`` maps these to HTTP status codes in one place."""

from __future__ import annotations


class AppError(Exception):
    """Base of errors a caller can act on. ``field`` names the input at fault, if any."""

    status_hint = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(AppError):
    """The input is malformed or violates a rule (the message says which)."""

    status_hint = 400


class NotFound(AppError):
    """The resource does not exist, or belongs to someone else (never tell which)."""

    status_hint = 404


class Conflict(AppError):
    """The request clashes with existing data (e.g. a duplicate portfolio name)."""

    status_hint = 409


class LimitExceeded(AppError):
    """A per-user quota would be exceeded (e.g. too many new symbols being onboarded)."""

    status_hint = 429


class Forbidden(AppError):
    """Authenticated but not allowed (e.g. an admin route for a non-admin)."""

    status_hint = 403


class Unauthorized(AppError):
    """No valid bearer token."""

    status_hint = 401


class NotReady(AppError):
    """The data the request needs is not there yet (e.g. no prices stored at all)."""

    status_hint = 503
