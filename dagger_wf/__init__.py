"""dagger_wf: reproducible, branching machine-learning experiments.

Define a tree of states in plain Python; every state is cached by content and computed
once, locally with Dask or on a cluster through Snakemake.
"""

from .analysis import NodeSet, StaticExperimentTree
from .errors import (
    CorruptStateError,
    CorruptStateWarning,
    DaggerError,
    DaggerWarning,
    ForeignPromiseError,
    InvalidMetricError,
    InvalidNodeSetOperandError,
    InvalidTagError,
    MetricOutsideRunError,
    MissingPropertyError,
    NotAnExperimentError,
    OverlappingAttributesError,
    RecipeDefinitionError,
    RecipeFailedError,
    RecipeReturnError,
    RecipeSourceUnavailableError,
    ReservedPropertyNameError,
    SlimStateError,
    StandInStateClassWarning,
    StateClassMismatchError,
    StateNotComputedError,
    StateNotFoundError,
    TreeAlreadySpawnedError,
    TreeNotSpawnedError,
    UnhashablePropertyError,
    UnknownMetricError,
    UnknownPropertyError,
    UnknownResourceError,
    UnknownRunnerError,
    WorkerLostError,
)
from .events import EventKind, RunEvent, RunReport
from .experiment import Experiment
from .hashing import explain_key
from .recipe import Function, Recipe, function
from .state import ExperimentState, ExperimentStatePromise

__version__ = "0.1.0"

__all__ = [
    "CorruptStateError",
    "CorruptStateWarning",
    "DaggerError",
    "DaggerWarning",
    "EventKind",
    "Experiment",
    "ExperimentState",
    "ExperimentStatePromise",
    "ForeignPromiseError",
    "Function",
    "InvalidMetricError",
    "InvalidNodeSetOperandError",
    "InvalidTagError",
    "MetricOutsideRunError",
    "MissingPropertyError",
    "NodeSet",
    "NotAnExperimentError",
    "OverlappingAttributesError",
    "Recipe",
    "RecipeDefinitionError",
    "RecipeFailedError",
    "RecipeReturnError",
    "RecipeSourceUnavailableError",
    "ReservedPropertyNameError",
    "RunEvent",
    "RunReport",
    "SlimStateError",
    "StandInStateClassWarning",
    "StateClassMismatchError",
    "StateNotComputedError",
    "StateNotFoundError",
    "StaticExperimentTree",
    "TreeAlreadySpawnedError",
    "TreeNotSpawnedError",
    "UnhashablePropertyError",
    "UnknownMetricError",
    "UnknownPropertyError",
    "UnknownResourceError",
    "UnknownRunnerError",
    "WorkerLostError",
    "explain_key",
    "function",
]
