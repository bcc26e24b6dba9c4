"""The user's side: the CLI, `Tuner`, results and plots (`kubetune[client]`).

Imported on a user's laptop or notebook; never by the operator pod or a trial
pod, and never imports kopf. From the bottom up: `errors` (the one error
family), `connection` (kubeconfig, namespace, API client), `history` (curves
from Prometheus and the TuneTrials), `config` and `domains` (Ray's arguments),
`results` (ResultGrid), `experiments` (ExperimentClient, the one API caller),
`tuner` (Tuner), `plot`, `devjourney` and `cli/`. Only `cli.cluster` imports
the dev cluster, to start it.
"""
