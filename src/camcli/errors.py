"""camcli's exception hierarchy.

Every error a user can cause is a :class:`CamcliError` whose message names the bad value and the fix.
The CLI translates them once, at its boundary, into a one-line message and an exit code.
"""

from __future__ import annotations


class CamcliError(Exception):
    """Base class for errors a user can cause; ``str(err)`` is the whole one-line message."""

    #: exit code the CLI uses when this error stops a run before any input ran
    exit_code = 2


class UsageError(CamcliError):
    """A bad option value (device, target, colormap, …)."""


class ModelError(CamcliError):
    """The model cannot be built or its weights cannot be loaded."""


class LayerError(CamcliError):
    """The layer does not exist, is not usable for the requested operation, or ran more than once."""


class TargetError(CamcliError):
    """A class index or name that the model does not have."""


class CheckpointError(ModelError):
    """A checkpoint file that cannot be loaded safely or does not match the architecture."""


class OutputError(CamcliError):
    """The outputs or the manifest cannot be written (a full disk, a read-only folder); what was recorded so far
    is complete."""

    exit_code = 1


class InputError(CamcliError):
    """One input image cannot be read (missing, empty, corrupt, too large, …).

    Pipelines report these per file and go on with the other inputs.
    """

    exit_code = 1
