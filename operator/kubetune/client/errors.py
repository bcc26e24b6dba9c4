"""The user side's one family of errors: problems a user can fix, each said in one line.

The CLI prints str() of any `KubetuneError` on stderr and exits 1, without a
traceback; the Tuner raises them as they are.
"""

from __future__ import annotations


class KubetuneError(Exception):
    """A problem the user can fix; str() is one line saying what and how."""


class ExperimentNotFound(KubetuneError):
    """No TuneExperiment (or TuneTrial) of that name in the namespace."""


class ClusterUnreachable(KubetuneError):
    """The Kubernetes API did not answer."""


class TuneError(KubetuneError):
    """The experiment could not be run as asked (it failed, or timed out)."""


class HistoryUnavailable(KubetuneError):
    """Prometheus could not be queried; the message says why (curves fall back to the
    values kept on the TuneTrials)."""


__all__ = [
    "ClusterUnreachable",
    "ExperimentNotFound",
    "HistoryUnavailable",
    "KubetuneError",
    "TuneError",
]
