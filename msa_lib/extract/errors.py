"""Exceptions of the extraction stage.

Every failure on a clip ends in exactly one of these, with a message that names the file and says what
was expected, so a batch run can record it against the clip and carry on with the next one.
``clip`` is the file (or clip id) concerned and ``stage`` the step that failed ("media", "audio",
"asr", "visual", ...). The classes pickle cleanly, so they survive dask/multiprocessing workers.
"""
from __future__ import annotations

import os


class ExtractionError(RuntimeError):
    """Base class: extraction of one clip failed at ``stage``."""

    default_stage = "extract"

    def __init__(self, message: str, clip: str | os.PathLike | None = None, stage: str | None = None):
        super().__init__(message)
        self.message = message
        self.clip = None if clip is None else str(clip)
        self.stage = stage or self.default_stage

    def __reduce__(self):  # custom __init__ signature: tell pickle how to rebuild us
        return (self.__class__, (self.message, self.clip, self.stage))

    def __str__(self) -> str:
        # The message already names the file when it is known; only prepend it when it does not.
        if self.clip and self.clip not in self.message:
            return f"{self.clip}: {self.message}"
        return self.message


class MediaError(ExtractionError):
    """The file is missing, unreadable, corrupt, empty, or lacks the stream that was asked for."""

    default_stage = "media"


class MissingToolError(ExtractionError):
    """An external program (ffmpeg/ffprobe) is not installed. Not the clip's fault: stop the run."""

    default_stage = "setup"


class NoSpeechError(ExtractionError):
    """The audio holds no speech (silence, or the recogniser returned no words)."""

    default_stage = "asr"


class NoFaceError(ExtractionError):
    """No face was found in any of the sampled video frames (``n_frames``: how many were searched)."""

    default_stage = "visual"
    n_frames: int = 0


# Bad arguments rather than a failed clip: plain ValueErrors, raised before any work is done.
class AudioInputError(ValueError):
    """A waveform or sound file given to ASR or an audio feature extractor is unusable: missing,
    undecodable, empty, non-finite, or not a 1-D mono signal."""


class ASRConfigError(ValueError):
    """A Whisper setting (:class:`~msa_lib.extract.asr.ASRConfig`,
    :class:`~msa_lib.extract.whisper_features.WhisperEncoderConfig`, a precision the device lacks) has a
    value we cannot use."""


__all__ = ["ExtractionError", "MediaError", "MissingToolError", "NoSpeechError", "NoFaceError",
           "AudioInputError", "ASRConfigError"]
