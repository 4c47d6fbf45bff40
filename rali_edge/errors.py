"""Exceptions raised by rali-edge. The CLI turns any RaliEdgeError into a one-line message."""

from __future__ import annotations


class RaliEdgeError(Exception):
    """Base class of every error this package raises on purpose (bad input, missing files...)."""


class ImageLoadError(RaliEdgeError):
    """An image could not be read; names the file and the reason."""

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DataError(RaliEdgeError):
    """Meta files, CSVs or triplet files that are missing, empty or malformed."""


class InputFileError(DataError):
    """An input file named by the user (a meta file, a scores CSV, an image folder) that is missing,
    unparseable, empty or mislabelled: rejected before any work is done."""


class ConfigError(RaliEdgeError):
    """A configuration value that cannot work (bad range, unknown option)."""


class BundleError(RaliEdgeError):
    """A scorer bundle that is missing, tampered, truncated or of an unsupported schema."""


class ExportError(RaliEdgeError):
    """An export that failed."""


class UnsupportedOptionError(RaliEdgeError):
    """An option combination a backend does not support; never silently changed."""


class ValidationFailed(RaliEdgeError):
    """An artifact's outputs differ from the reference; carries every failure found."""

    def __init__(self, failures: list[str]):
        self.failures = list(failures)
        super().__init__("validation failed:\n  - " + "\n  - ".join(self.failures))


class NotRunnableHere(RaliEdgeError):
    """The artifact is valid but its runtime is absent on this machine (e.g. Core ML off macOS)."""
