"""Runners: turn a plan into computed states in the store."""

from .base import RUNNERS, Runner, get_runner

__all__ = ["RUNNERS", "Runner", "get_runner"]
