"""Every exception and warning a user of dagger_wf can see.

Each error subclasses the builtin a caller would naturally catch (``KeyError`` for a
missing property, ``TypeError`` for a value of the wrong kind, ...) as well as
:class:`DaggerError`, so ``except KeyError`` and ``except dg.DaggerError`` both work.
Messages say what went wrong and what to do about it.
"""

from __future__ import annotations

from pathlib import Path


class DaggerError(Exception):
    """Base class of every error raised by dagger_wf."""

    def __str__(self) -> str:
        # KeyError would otherwise print its message quoted, as if it were a key.
        return str(self.args[0]) if self.args else ""


class MissingPropertyError(DaggerError, KeyError):
    """A root state was spawned without one of its ``PROPERTIES``."""


class UnhashablePropertyError(DaggerError, TypeError):
    """A property value cannot be part of a cache key (a lambda, an open file, ...)."""


class ReservedPropertyNameError(DaggerError, ValueError):
    """A declared property or attribute would overwrite dagger_wf's own bookkeeping."""


class DeclarationTypeError(DaggerError, TypeError):
    """``PROPERTIES`` or ``NONHASHED_ATTRIBUTES`` is not a list or tuple of names."""


class UnpicklablePayloadError(DaggerError, TypeError):
    """An attribute of a state's payload cannot be stored (a lock, a generator, ...)."""


class ExperimentPathError(DaggerError, NotADirectoryError):
    """The path given for an experiment is not (and cannot become) a directory."""


class UnsupportedPathError(DaggerError, ValueError):
    """A store path has characters Snakemake would read as wildcards."""


class OverlappingAttributesError(DaggerError, ValueError):
    """A name is declared in both ``PROPERTIES`` and ``NONHASHED_ATTRIBUTES``."""


class RecipeDefinitionError(DaggerError, TypeError):
    """A recipe is used in a way its definition does not allow."""


class UnknownResourceError(DaggerError, ValueError):
    """A recipe's RESOURCES names a key or a value a cluster job cannot take."""


class RecipeSourceUnavailableError(DaggerError, RuntimeError):
    """A recipe's source cannot be read, so its code version cannot be computed."""


class RecipeReturnError(DaggerError, RuntimeError):
    """A recipe's ``run()`` returned something other than the state it was given (or a
    new state of the same class): not a state, another class's, or another live state."""


class RecipeFailedError(DaggerError, RuntimeError):
    """A recipe or Function failed and its own exception could not be carried back."""


class WorkflowOutdatedError(DaggerError, RuntimeError):
    """A recipe's code changed between defining the tree and computing a state of it."""


class WorkerLostError(DaggerError, RuntimeError):
    """A worker process died and the state it was computing could not be told."""


class UnknownLayoutError(DaggerError, ValueError):
    """``draw(direction=...)`` was given a direction Graphviz does not lay trees out in."""


class UnguardedScriptError(DaggerError, RuntimeError):
    """scheduler='processes' from a script that runs its experiment at import."""


class TreeAlreadySpawnedError(DaggerError, RuntimeError):
    """``spawn_new_tree`` was called twice on one Experiment."""


class TreeNotSpawnedError(DaggerError, RuntimeError):
    """An Experiment was run before ``spawn_new_tree`` defined its root."""


class NestedRunError(DaggerError, RuntimeError):
    """A recipe or Function ran (or computed) the experiment that is running it."""


class ForeignPromiseError(DaggerError, ValueError):
    """A recipe was applied to something that is not a promise of a live Experiment."""


class StateClassMismatchError(DaggerError, TypeError):
    """An experiment directory was written by another state class."""


class NotAnExperimentError(DaggerError, FileNotFoundError):
    """A directory holds no dagger_wf experiment."""


class CorruptStateError(DaggerError, ValueError):
    """A state's metadata or payload file is unreadable (truncated, edited, foreign), or
    one of its blobs is missing or changed.

    ``key``: the damaged state, when known; ``blob``: the damaged blob file, if that is
    what is damaged (it is shared by content, so removing it lets a rewrite replace it)."""

    key: str | None = None
    blob: Path | None = None
    detail: str | None = None  # what is damaged, without the advice


class SnapshotNotFoundError(DaggerError, FileNotFoundError):
    """A state refers to a code or environment snapshot missing from the directory."""


class CorruptSnapshotError(DaggerError, ValueError):
    """A snapshot file is unreadable or no longer matches the digest it is named after."""


class StateNotFoundError(DaggerError, KeyError):
    """No state with the given key (or key prefix) exists."""


class StateNotComputedError(DaggerError, FileNotFoundError):
    """A state's payload was asked for before the state was computed."""


class DetachedBookkeepingError(DaggerError, ReferenceError):
    """A ``state.dagger`` was used after its state was garbage-collected."""


class SlimStateError(DaggerError, AttributeError):
    """A payload attribute was read on a slim state, whose payload is not loaded."""


class PayloadNotComputedError(DaggerError, AttributeError):
    """A payload attribute was read on a state that is defined but not computed, and
    that cannot be computed on demand here."""


class UnknownRunnerError(DaggerError, ValueError):
    """A runner or scheduler name is not one dagger_wf knows."""


class InvalidTagError(DaggerError, TypeError):
    """A tag that is not a string."""


class ReservedTagError(InvalidTagError, ValueError):
    """A tag starts with ``!``, which node filters read as "not"."""


class InvalidNodeSetOperandError(DaggerError, TypeError):
    """A NodeSet was combined with something that is not a NodeSet."""


class InvalidMetricError(DaggerError, ValueError):
    """A metric name that is not a non-empty string, or a value that is not a number."""


class MetricOutsideRunError(DaggerError, RuntimeError):
    """``state.dagger.log_metric`` was called while no recipe, initialize_state or Function ran."""


class UnknownMetricError(DaggerError, KeyError):
    """``state.dagger.load_metric`` asked for a metric the state never recorded."""


class UnknownParameterError(DaggerError, KeyError):
    """An override names a parameter the script does not declare."""


class InvalidOverrideError(DaggerError, ValueError):
    """An override that is not key=value, or whose value does not fit the parameter."""


class DuplicateOverrideError(InvalidOverrideError):
    """One parameter is given twice on a command line (``lr=0.1 lr=0.2``)."""


class UnusedOverridesError(DaggerError, RuntimeError):
    """Overrides were given to a script that never asked for its parameters."""


class CommandLineError(DaggerError, ValueError):
    """A ``dagger-wf`` command line that cannot be carried out as given."""


class MixedArgumentsError(CommandLineError):
    """``python script.py`` got parameter overrides among arguments of its own, which
    ``dg.parameters()`` cannot read without guessing."""


class TreeRedefinedError(DaggerError, RuntimeError):
    """``gc --superseded`` found that a run redefined a tree while it was looking."""


class DashboardPortError(DaggerError, OSError):
    """The dashboard cannot listen where asked (the port is taken, or not allowed)."""


class DaggerWarning(UserWarning):
    """Base class of every warning issued by dagger_wf."""


class CorruptStateWarning(DaggerWarning):
    """A damaged state was skipped while the rest of the tree loaded, or recomputed by a
    run that found it damaged."""


class CodeChangedWarning(DaggerWarning):
    """Code around a recipe changed since it made states this run reuses."""


class EnvironmentChangedWarning(DaggerWarning):
    """The environment changed since the states a run extends were made."""


class ImpurityWarning(DaggerWarning):
    """A recipe gave different bytes when run again on the same parent with the same seed."""


class SeedMismatchWarning(DaggerWarning):
    """Cached states were computed with another seed than the one asked for."""


class UnknownArgumentWarning(DaggerWarning):
    """``spawn_new_tree`` got a keyword that no property, nonhashed attribute or named
    parameter of ``initialize_state`` takes: likely a typo."""


class StandInStateClassWarning(DaggerWarning):
    """The state class of a restored experiment could not be imported."""


class DashboardExposedWarning(DaggerWarning):
    """The dashboard listens beyond this machine: whoever reaches the port reads the store."""
