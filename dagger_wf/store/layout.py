"""The names inside an experiment directory, spelled here and nowhere else.

Layout::

    experiment.json          which state class, the latest root, which format
    roots/<key>.json         one file per root ever spawned here (never rewritten)
    states/<key>.json        metadata of a computed state (written last: the "done" mark)
    payloads/<key>.payload   its NONHASHED_ATTRIBUTES (small buffers inline)
    blobs/<sha256>           large arrays and tensors, by content: stored once, shared
    failures/<key>/<time>.json  metadata of each failed attempt, with its traceback
    running/<key>.json       who is computing the state now (gone once it is stored)
    running/<run>.plan       the plan of a run whose workers are other processes (gone after it)
    evaluations/<key>/<time>.json  each run of a Function on the state: status, metrics
    code/<digest>.json       code snapshots, by content
    environments/<digest>.json  environment snapshots, by content
    workflow/                the files of an emitted Snakemake workflow
    definitions/<digest>/<run>.json  what one run of a script defined from one root
                             (<run>.done once it ended; see dagger_wf.store.definitions)

The names are relative to the directory.
"""

EXPERIMENT_FILE = "experiment.json"
ROOTS = "roots"
STATES = "states"
PAYLOADS = "payloads"
BLOBS = "blobs"
FAILURES = "failures"
RUNNING = "running"
EVALUATIONS = "evaluations"
WORKFLOW = "workflow"
DEFINITIONS = "definitions"
# Content-addressed JSON snapshots (see dagger_wf.store.snapshots), one folder per kind.
CODE = "code"
ENVIRONMENTS = "environments"
SNAPSHOT_KINDS = (CODE, ENVIRONMENTS)


def record_name(key: str) -> str:
    """Where a computed state's metadata lives, relative to the directory."""
    return f"{STATES}/{key}.json"


def run_plan_name(run_id: str) -> str:
    """Where a run whose steps run in other processes keeps its plan while it runs."""
    return f"{RUNNING}/{run_id}.plan"


def payload_name(key: str) -> str:
    """Where a computed state's payload lives, relative to the directory."""
    return f"{PAYLOADS}/{key}.payload"
