"""Reading SLURM's job states, on text captured from sacct and squeue (no cluster needed).

The real-cluster tests (test_slurm.py) check the same path end to end; these pin what
each answer of the two commands means for the states of a job that is gone."""

from __future__ import annotations

import pytest

from dagger_wf.runners.interruptions import job_end_reason, parse_job_state

# sacct -j JOB -X -n -P -o State, and squeue -h -j JOB -o %T, as SLURM 23 prints them.
SACCT_TIMEOUT = "TIMEOUT\n"
SACCT_CANCELLED_BY_USER = "CANCELLED by 0\n"
SACCT_OUT_OF_MEMORY = "OUT_OF_MEMORY\n"
SACCT_NODE_FAIL = "NODE_FAIL\n"
SACCT_COMPLETED = "COMPLETED\n"
SACCT_TRUNCATED = "RUNNING+\n"
SQUEUE_PENDING = "PENDING\n"
SQUEUE_RUNNING = "RUNNING\n"
UNKNOWN_JOB = ""


@pytest.mark.parametrize(
    ("output", "state"),
    [
        (SACCT_TIMEOUT, "TIMEOUT"),
        (SACCT_CANCELLED_BY_USER, "CANCELLED"),
        (SACCT_OUT_OF_MEMORY, "OUT_OF_MEMORY"),
        (SACCT_TRUNCATED, "RUNNING"),
        (SQUEUE_PENDING, "PENDING"),
        (UNKNOWN_JOB, None),
        ("\n\n", None),
    ],
)
def test_the_job_state_is_the_first_word_of_the_output(output, state):
    assert parse_job_state(output) == state


def test_a_job_past_its_time_limit_says_to_raise_the_recipes_runtime():
    reason = job_end_reason("42", parse_job_state(SACCT_TIMEOUT))
    assert reason is not None
    assert "SLURM job 42 hit its time limit" in reason
    assert "RESOURCES['runtime']" in reason


@pytest.mark.parametrize(
    "output", [SACCT_CANCELLED_BY_USER, SACCT_OUT_OF_MEMORY, SACCT_NODE_FAIL, SACCT_COMPLETED]
)
def test_a_job_that_ended_otherwise_names_how_it_ended(output):
    state = parse_job_state(output)
    assert job_end_reason("7", state) == (
        f"SLURM job 7 ended ({state}) before this state was finished."
    )


@pytest.mark.parametrize("output", [SQUEUE_PENDING, SQUEUE_RUNNING, SACCT_TRUNCATED, UNKNOWN_JOB])
def test_a_job_that_may_still_run_or_is_unknown_interrupts_nothing(output):
    assert job_end_reason("7", parse_job_state(output)) is None
