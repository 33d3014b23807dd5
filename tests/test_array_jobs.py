"""``--shard auto``: the slice of an array job's task, read from each scheduler's variables (camcli.array_jobs).

The expected slices are worked out by hand from each scheduler's documented numbering (Slurm ``--array=0-7``:
task 2 is the third of eight); every task of an array gets a different slice and together they are 1…N; and two
``--shard auto`` runs under Slurm's variables write exactly what ``--shard 1/2`` and ``--shard 2/2`` write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from camcli.array_jobs import VARIABLES, resolve_shard
from camcli.cli import app
from camcli.errors import UsageError
from camcli.options import CamOptions, RunOptions

from .conftest import SAMPLES

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests may themselves run inside an array job: none of its variables is seen."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _slurm(task: int, first: int, last: int, step: int = 1) -> dict[str, str]:
    count = (last - first) // step + 1
    return {
        "SLURM_ARRAY_JOB_ID": "4711",
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_ARRAY_TASK_MIN": str(first),
        "SLURM_ARRAY_TASK_MAX": str(last),
        "SLURM_ARRAY_TASK_STEP": str(step),
        "SLURM_ARRAY_TASK_COUNT": str(count),
    }


def _sge(task: int, first: int, last: int, step: int = 1) -> dict[str, str]:
    return {
        "SGE_TASK_ID": str(task),
        "SGE_TASK_FIRST": str(first),
        "SGE_TASK_LAST": str(last),
        "SGE_TASK_STEPSIZE": str(step),
    }


def _lsf(index: int, end: int, step: int = 1) -> dict[str, str]:
    return {"LSB_JOBINDEX": str(index), "LSB_JOBINDEX_END": str(end), "LSB_JOBINDEX_STEP": str(step)}


CASES = [
    # (variables, --shard, (K, N), what the header says)
    (_slurm(2, 0, 7), "auto", (3, 8), "Slurm's array task 2 of 0–7"),  # --array=0-7: 0 is the first
    (_slurm(2, 1, 8), "auto", (2, 8), "Slurm's array task 2 of 1–8"),  # --array=1-8
    (_slurm(0, 0, 7), "auto", (1, 8), "Slurm's array task 0 of 0–7"),
    (_slurm(8, 1, 8), "auto", (8, 8), "Slurm's array task 8 of 1–8"),
    (_slurm(4, 0, 14, 2), "auto", (3, 8), "Slurm's array task 4 of 0–14 step 2"),  # --array=0-14:2 → 0,2,4,…
    (_slurm(2, 0, 7), "auto/8", (3, 8), "Slurm's array task 2 of 0–7"),  # the count agrees
    ({**_slurm(2, 0, 7), "SLURM_ARRAY_TASK_STEP": ""}, "auto", (3, 8), "Slurm's array task 2 of 0–7"),  # no step: 1
    (_sge(3, 1, 8), "auto", (3, 8), "Grid Engine's array task 3 of 1–8"),  # qsub -t 1-8
    (_sge(7, 1, 10, 3), "auto", (3, 4), "Grid Engine's array task 7 of 1–10 step 3"),  # -t 1-10:3 → 1,4,7,10
    (_lsf(3, 8), "auto", (3, 8), "LSF's array index 3 of 1–8"),  # bsub -J "x[1-8]"
    (_lsf(5, 15, 2), "auto", (3, 8), "LSF's array index 5 of 1–15 step 2"),  # x[1-15:2] → 1,3,5,…
    (
        {"AWS_BATCH_JOB_ARRAY_INDEX": "0", "AWS_BATCH_JOB_ARRAY_SIZE": "3"},
        "auto",
        (1, 3),
        "AWS Batch's array index 0 of 0–2",
    ),
    ({"AWS_BATCH_JOB_ARRAY_INDEX": "2"}, "auto/3", (3, 3), "AWS Batch's array index 2 of 0–2"),  # no size: from N
    ({"PBS_ARRAY_INDEX": "3", "PBS_ARRAY_ID": "12[].pbs"}, "auto/8", (3, 8), "PBS Pro's array index 3 of 1–8"),
    ({"PBS_ARRAYID": "1"}, "auto/4", (1, 4), "Torque's array index 1 of 1–4"),
    ({"JOB_COMPLETION_INDEX": "0"}, "auto/4", (1, 4), "Kubernetes' completion index 0 of 0–3"),
    ({"JOB_COMPLETION_INDEX": "3"}, "AUTO/4", (4, 4), "Kubernetes' completion index 3 of 0–3"),
    # LSF sets LSB_JOBINDEX=0 in every job that is not an array, Grid Engine SGE_TASK_ID=undefined: not arrays
    (
        {**_slurm(2, 1, 8), "LSB_JOBINDEX": "0", "SGE_TASK_ID": "undefined"},
        "auto",
        (2, 8),
        "Slurm's array task 2 of 1–8",
    ),
    # Slurm's PBS compatibility plugin mirrors its own index into PBS_ARRAY_INDEX (0-based here): Slurm's
    (
        {**_slurm(2, 0, 7), "PBS_ARRAY_INDEX": "2", "PBS_ARRAY_ID": "4711"},
        "auto",
        (3, 8),
        "Slurm's array task 2 of 0–7",
    ),
    # two schedulers that agree: the first one tells (Torque takes Slurm's count)
    ({**_slurm(3, 1, 8), "PBS_ARRAYID": "3"}, "auto", (3, 8), "Slurm's array task 3 of 1–8"),
]


@pytest.mark.parametrize(("variables", "value", "shard", "source"), CASES)
def test_each_scheduler(monkeypatch: pytest.MonkeyPatch, variables, value, shard, source):
    for name, text in variables.items():
        monkeypatch.setenv(name, text)
    options = RunOptions(shard=value)
    options.check()  # what a run does first
    assert options.shard == shard and options.shard_source == source
    options.check()  # a second check (the job's own) keeps both
    assert options.resolved_shard() == shard and options.shard_source == source


@pytest.mark.parametrize(
    ("make", "indexes", "value"),
    [
        (lambda i: _slurm(i, 0, 7), range(0, 8), "auto"),
        (lambda i: _slurm(i, 1, 8), range(1, 9), "auto"),
        (lambda i: _slurm(i, 3, 31, 4), range(3, 32, 4), "auto"),
        (lambda i: _sge(i, 2, 12, 5), range(2, 13, 5), "auto"),
        (lambda i: _lsf(i, 7, 3), range(1, 8, 3), "auto"),
        (lambda i: {"AWS_BATCH_JOB_ARRAY_INDEX": str(i), "AWS_BATCH_JOB_ARRAY_SIZE": "5"}, range(5), "auto"),
        (lambda i: {"JOB_COMPLETION_INDEX": str(i)}, range(6), "auto/6"),
        (lambda i: {"PBS_ARRAY_INDEX": str(i)}, range(1, 6), "auto/5"),
    ],
)
def test_the_tasks_of_an_array_take_every_slice_once(make, indexes, value):
    shards = [resolve_shard(value, make(i))[0] for i in indexes]  # in the order of the indexes
    assert shards == [(k, len(indexes)) for k in range(1, len(indexes) + 1)]


ERRORS = [
    # (variables, --shard, what the message says)
    ({}, "auto", "not a task of an array job (none of SLURM_ARRAY_TASK_ID, PBS_ARRAY_INDEX"),
    ({}, "auto/4", "--shard K/N"),
    ({"SGE_TASK_ID": "undefined"}, "auto", "not a task of an array job"),
    ({"JOB_COMPLETION_INDEX": "1"}, "auto", "give the count: --shard auto/N"),
    ({"PBS_ARRAY_INDEX": "2"}, "auto", "PBS Pro gives this task's array index (2)"),
    (_slurm(2, 0, 7), "auto/4", "Slurm's array has 8 tasks (0–7), not 4"),
    ({"AWS_BATCH_JOB_ARRAY_INDEX": "1", "AWS_BATCH_JOB_ARRAY_SIZE": "3"}, "auto/2", "AWS Batch's array has 3 tasks"),
    (
        {**_slurm(2, 0, 7), **_sge(2, 1, 8)},
        "auto",
        "Slurm's array task 2 of 0–7 makes this shard 3/8, but Grid Engine's array task 2 of 1–8 makes it 2/8",
    ),
    (
        {**_slurm(1, 1, 4), "JOB_COMPLETION_INDEX": "1"},
        "auto",
        "but Kubernetes' completion index 1 of 0–3 makes it 2/4",
    ),
    (
        {"PBS_ARRAY_INDEX": "0"},
        "auto/8",
        "array index 0 is not one of 1–8; give the array's count as N and submit it as qsub -J 1-N",
    ),
    ({"JOB_COMPLETION_INDEX": "4"}, "auto/4", "completion index 4 is not one of 0–3"),
    (_slurm(3, 0, 14, 2), "auto", "array task 3 is not one of 0–14 step 2"),
    ({**_slurm(2, 1, 5), "SLURM_ARRAY_TASK_COUNT": "3"}, "auto", "Slurm's array is not a range of indexes"),
    ({"SLURM_ARRAY_TASK_ID": "2"}, "auto", "SLURM_ARRAY_TASK_MIN/MAX/STEP do not describe a range"),
    ({"SLURM_ARRAY_TASK_ID": "two"}, "auto", "SLURM_ARRAY_TASK_ID='two' is not a whole number"),
    ({}, "auto/x", "give auto, or auto/N"),
    ({}, "auto/0", "N must be at least 1"),
    ({}, "3/x", "must look like K/N (e.g. 3/8), auto or auto/N"),
    ({}, "9/8", "K must be between 1 and N"),
]


@pytest.mark.parametrize(("variables", "value", "message"), ERRORS)
def test_errors_are_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variables, value, message):
    for name, text in variables.items():
        monkeypatch.setenv(name, text)
    with pytest.raises(UsageError) as caught:
        resolve_shard(value)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    out = tmp_path / "out"
    res = runner.invoke(app, ["gradcam", str(SAMPLES / "chelsea.png"), "--out", str(out), "--shard", value])
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().count("\n") == 0 and message in res.stderr  # one line (soft-wrapped by the console)
    assert "Traceback" not in res.output and not list(out.rglob("*.png"))


def test_python_api_takes_auto(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    options = CamOptions(shard="auto/4")
    assert options.shard == "auto/4" and options.shard_source is None  # resolved when checked, not before
    options.check()
    assert options.shard == (2, 4) and options.shard_source == "Kubernetes' completion index 1 of 0–3"
    plain = CamOptions(shard="3/8")
    plain.check()
    assert plain.shard == (3, 8) and plain.shard_source is None


def _parts(out: Path) -> dict[str, set[str]]:
    """Each manifest part's inputs (by file name)."""
    return {
        part.name: {Path(json.loads(line)["input"]).name for line in part.read_text().splitlines()}
        for part in sorted(out.glob("manifest.shard-*.jsonl"))
    }


def test_two_auto_runs_write_what_explicit_shards_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    auto, explicit = tmp_path / "auto", tmp_path / "explicit"
    for task in (1, 2):  # sbatch --array=1-2
        with monkeypatch.context() as env:
            for name, text in _slurm(task, 1, 2).items():
                env.setenv(name, text)
            res = runner.invoke(app, ["gradcam", str(SAMPLES), "--out", str(auto), "--shard", "auto"])
        assert res.exit_code == 0, res.output
        assert f"shard {task}/2 (from Slurm's array task {task} of 1–2)" in res.stderr
    for k in (1, 2):
        res = runner.invoke(app, ["gradcam", str(SAMPLES), "--out", str(explicit), "--shard", f"{k}/2", "-q"])
        assert res.exit_code == 0, res.output
    parts = _parts(auto)
    assert parts == _parts(explicit)
    assert sorted(parts) == ["manifest.shard-1-of-2.jsonl", "manifest.shard-2-of-2.jsonl"]
    assert all(parts.values()) and set.union(*parts.values()) == {"astronaut.png", "chelsea.png", "coffee.png"}
    assert sum(map(len, parts.values())) == 3  # disjoint
    assert sorted(p.name for p in auto.glob("*.png")) == sorted(p.name for p in explicit.glob("*.png"))
