"""The user's side: the CLI, `Tuner`, results and plots (`kubetune[client]`).

Imported on a user's laptop or notebook; never by the operator pod or a trial pod,
and never imports kopf.
"""
