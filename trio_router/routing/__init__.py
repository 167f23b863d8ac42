"""Routing: path templates compiled into a radix tree over segments."""

from .radix import Match, RouteConflict, Router
from .template import TemplateError

__all__ = ["Match", "RouteConflict", "Router", "TemplateError"]
