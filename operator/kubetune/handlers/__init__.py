"""kopf handlers: thin; decisions come from kubetune.planner, I/O goes through the gateway."""

from kubetune.handlers import experiment  # noqa: F401  (registers the handlers)
