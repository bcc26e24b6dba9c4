"""The operator pod: kopf handlers, the reconcile loop, the pure planner and the one API gateway.

Imported only by the operator process (`python -m kubetune`, `kubetune[operator]`);
never by the client, the trial SDK or the dev cluster.
"""
