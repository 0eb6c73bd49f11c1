"""Exceptions whose message is meant for the user, as one clear line."""


class Bids2HubError(Exception):
    """Base class: the message names the file and what is wrong."""


class ConfigError(Bids2HubError):
    """The workflow configuration is invalid."""


class BidsError(Bids2HubError):
    """The input folder is not a usable BIDS dataset, or one of its files is broken."""


class NiftiError(BidsError):
    """A NIfTI file is truncated, corrupt or has an unusable header."""


class ValidationError(Bids2HubError):
    """A hard check of the validation report failed (the report says which)."""


class SegmentationError(Bids2HubError):
    """Lesion segmentation failed or produced an unusable mask."""


class HubError(Bids2HubError):
    """Publishing to the Hugging Face Hub failed (never includes the token)."""
