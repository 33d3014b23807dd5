"""``--shard``: ``K/N``, or ``auto``: the slice an array job's task takes, read from its scheduler's environment.

A batch scheduler tells each task of an array job its index in environment variables; ``--shard auto`` turns
that index into camcli's ``K/N`` (K from 1), so that one job script serves every task. Slurm and Grid Engine say
the array's first and last index and its step, AWS Batch its size, LSF its last index and step (its arrays start
at 1). PBS Pro, Torque and Kubernetes indexed jobs give the index only: ``--shard auto/N`` gives the count (PBS
arrays are then taken as 1…N, Kubernetes' completion indexes are 0…N-1 by definition). Where the scheduler says
the count, ``auto/N`` must agree with it; two schedulers whose variables point at different slices are an error,
never a guess.

Plain Python, like :mod:`camcli.options`, which resolves ``auto`` with :func:`resolve_shard` when the options are
checked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .errors import UsageError

Shard = tuple[int, int]


def parse_shard(text: str | None) -> Shard | None:
    """``"3/8"`` → (3, 8); None stays None (``auto`` is read by :func:`resolve_shard`)."""
    if text is None:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard '{text}' must look like K/N (e.g. 3/8), auto or auto/N") from None
    shard = (k, n)
    check_shard(shard)
    return shard


def check_shard(shard: Shard | None) -> None:
    if shard is not None and (shard[1] < 1 or not 1 <= shard[0] <= shard[1]):
        raise UsageError(f"--shard {shard[0]}/{shard[1]}: K must be between 1 and N")


@dataclass(frozen=True)
class ArrayTask:
    """What one scheduler says about this process: its index among the array's ``first``, ``first + step``, …"""

    scheduler: str  # "Slurm", as the messages name it
    what: str  # "array task", "array index", "completion index"
    index: int
    first: int  # told by the scheduler, or its convention (PBS, LSF: 1; AWS Batch, Kubernetes: 0)
    step: int = 1
    count: int | None = None  # None: the scheduler does not say (--shard auto/N gives it)
    submit: str = ""  # how to submit an array of N tasks as camcli reads it, for the messages: "qsub -J 1-N"

    def span(self, count: int) -> str:
        last = self.first + self.step * (count - 1)
        return f"{self.first}–{last}" + (f" step {self.step}" if self.step != 1 else "")

    def describe(self, count: int) -> str:
        """``Slurm's array task 2 of 0–7``."""
        return f"{self.owner()} {self.what} {self.index} of {self.span(count)}"

    def owner(self) -> str:
        return self.scheduler + ("'" if self.scheduler.endswith("s") else "'s")

    def shard(self, count: int | None, option: str = "auto") -> Shard:
        """(K, N) of this task; ``count``: N where the scheduler does not say it (``auto/N``'s); ``option``: the
        value of --shard, for the messages."""
        n = self.count if self.count is not None else count
        if n is None:
            raise UsageError(
                f"--shard {option}: {self.scheduler} gives this task's {self.what} ({self.index}) but not how many "
                "tasks the array has; give the count: --shard auto/N"
            )
        position, off = divmod(self.index - self.first, self.step)
        if off or not 0 <= position < n:
            fix = ""
            if self.count is None:
                fix = (
                    "give the array's count as N"
                    + (f" and submit it as {self.submit}" if self.submit else "")
                    + ", or "
                )
            raise UsageError(
                f"--shard {option}: {self.owner()} {self.what} {self.index} is not one of {self.span(n)}; {fix}give "
                "the slice itself: --shard K/N"
            )
        return position + 1, n


def _number(env: Mapping[str, str], name: str) -> int | None:
    """The whole number in ``env[name]``; None when it is unset or empty."""
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--shard auto: {name}={text!r} is not a whole number; give --shard K/N instead") from None


def _ranged(
    scheduler: str,
    what: str,
    index: int,
    span: tuple[int | None, int | None, int | None],
    names: str,
    submit: str = "",
) -> ArrayTask:
    """A task of an array whose scheduler says its (first, last, step) indexes (``names``: those variables, for
    the message when they make no range)."""
    first, last, step = span[0], span[1], 1 if span[2] is None else span[2]
    if first is None or last is None or step < 1 or last < first:
        raise UsageError(
            f"--shard auto: {scheduler}'s {names} do not describe a range of indexes (first {first}, last {last}, "
            f"step {step}); give --shard K/N"
        )
    return ArrayTask(scheduler, what, index, first, step, (last - first) // step + 1, submit)


def _slurm(env: Mapping[str, str]) -> ArrayTask | None:
    """``--array=0-7``, ``1-8``, ``0-14:2`` (a ``%`` throttle changes no variable). A list that is not a range
    (``--array=1,2,5``) has a task count that its first, last and step contradict: refused."""
    index = _number(env, "SLURM_ARRAY_TASK_ID")
    if index is None:
        return None
    first, last, step = (_number(env, f"SLURM_ARRAY_TASK_{v}") for v in ("MIN", "MAX", "STEP"))
    task = _ranged("Slurm", "array task", index, (first, last, step), "SLURM_ARRAY_TASK_MIN/MAX/STEP")
    count = _number(env, "SLURM_ARRAY_TASK_COUNT")
    if count is not None and task.count is not None and count != task.count:
        raise UsageError(
            f"--shard auto: Slurm's array is not a range of indexes (SLURM_ARRAY_TASK_COUNT={count}, but "
            f"{task.span(task.count)} holds {task.count}); submit it as --array=0-{count - 1}, or give --shard K/N"
        )
    return task


def _grid_engine(env: Mapping[str, str]) -> ArrayTask | None:
    """SGE, UGE, OGE: ``qsub -t 1-8[:step]`` (task ids start at 1 or later; "undefined" outside an array)."""
    if env.get("SGE_TASK_ID", "").strip().lower() in ("", "undefined"):
        return None
    index = _number(env, "SGE_TASK_ID") or 0
    span = (_number(env, "SGE_TASK_FIRST"), _number(env, "SGE_TASK_LAST"), _number(env, "SGE_TASK_STEPSIZE"))
    return _ranged("Grid Engine", "array task", index, span, "SGE_TASK_FIRST/LAST/STEPSIZE")


def _lsf(env: Mapping[str, str]) -> ArrayTask | None:
    """``bsub -J "name[1-8]"``: LSF sets LSB_JOBINDEX (0 outside an array), the last index and the step, not the
    first; its indexes are positive and its arrays are taken to start at 1."""
    index = _number(env, "LSB_JOBINDEX")
    if not index:
        return None
    last, step, submit = _number(env, "LSB_JOBINDEX_END"), _number(env, "LSB_JOBINDEX_STEP"), 'bsub -J "name[1-N]"'
    if not last:
        return ArrayTask("LSF", "array index", index, 1, step or 1, submit=submit)
    return _ranged("LSF", "array index", index, (1, last, step), "LSB_JOBINDEX_END/STEP", submit)


def _pbs_pro(env: Mapping[str, str]) -> ArrayTask | None:
    """``qsub -J 1-8``: PBS Pro says the index (and the array's job id), not the range. Slurm's PBS compatibility
    plugin copies its own index here, with PBS_ARRAY_ID = SLURM_ARRAY_JOB_ID: those are Slurm's, read there."""
    index = _number(env, "PBS_ARRAY_INDEX")
    slurm_job = env.get("SLURM_ARRAY_JOB_ID", "").strip()
    if index is None or (slurm_job and env.get("PBS_ARRAY_ID", "").strip() == slurm_job):
        return None
    return ArrayTask("PBS Pro", "array index", index, 1, submit="qsub -J 1-N")


def _torque(env: Mapping[str, str]) -> ArrayTask | None:
    """``qsub -t 1-8``: Torque says the index only."""
    index = _number(env, "PBS_ARRAYID")
    return None if index is None else ArrayTask("Torque", "array index", index, 1, submit="qsub -t 1-N")


def _aws_batch(env: Mapping[str, str]) -> ArrayTask | None:
    """An array job of size N: indexes 0…N-1, and the size in AWS_BATCH_JOB_ARRAY_SIZE."""
    index = _number(env, "AWS_BATCH_JOB_ARRAY_INDEX")
    if index is None:
        return None
    return ArrayTask("AWS Batch", "array index", index, 0, count=_number(env, "AWS_BATCH_JOB_ARRAY_SIZE"))


def _kubernetes(env: Mapping[str, str]) -> ArrayTask | None:
    """A Job with ``completionMode: Indexed``: indexes 0…completions-1; the count is not in the environment."""
    index = _number(env, "JOB_COMPLETION_INDEX")
    if index is None:
        return None
    return ArrayTask("Kubernetes", "completion index", index, 0)


#: each scheduler's reader, and the variable that says a process is one of its array's tasks
SCHEDULERS: tuple[tuple[str, Callable[[Mapping[str, str]], ArrayTask | None]], ...] = (
    ("SLURM_ARRAY_TASK_ID", _slurm),
    ("PBS_ARRAY_INDEX", _pbs_pro),
    ("PBS_ARRAYID", _torque),
    ("LSB_JOBINDEX", _lsf),
    ("SGE_TASK_ID", _grid_engine),
    ("AWS_BATCH_JOB_ARRAY_INDEX", _aws_batch),
    ("JOB_COMPLETION_INDEX", _kubernetes),
)
#: every variable read (the tests clear them all)
VARIABLES = (
    *(name for name, _ in SCHEDULERS),
    *("SLURM_ARRAY_TASK_" + v for v in ("MIN", "MAX", "STEP", "COUNT")),
    "SLURM_ARRAY_JOB_ID",
    "PBS_ARRAY_ID",
    "LSB_JOBINDEX_END",
    "LSB_JOBINDEX_STEP",
    *("SGE_TASK_" + v for v in ("FIRST", "LAST", "STEPSIZE")),
    "AWS_BATCH_JOB_ARRAY_SIZE",
)


def array_tasks(env: Mapping[str, str]) -> list[ArrayTask]:
    """What each scheduler whose variables are set says about this process."""
    return [task for _, read in SCHEDULERS if (task := read(env)) is not None]


def resolve_shard(value: Shard | str | None, env: Mapping[str, str] | None = None) -> tuple[Shard | None, str | None]:
    """``--shard``'s value → ((K, N) or None, what told it, or None): ``"3/8"`` and (3, 8) → ((3, 8), None);
    ``"auto"`` and ``"auto/N"`` → the slice of the array task that runs this process (``env``: os.environ) and
    e.g. ``"Slurm's array task 2 of 0–7"``."""
    if not isinstance(value, str):
        check_shard(value)
        return value, None
    text = value.strip().lower()
    if text != "auto" and not text.startswith("auto/"):
        return parse_shard(value), None
    count = None
    if text != "auto":
        count = _count(value, text.removeprefix("auto/"))
    tasks = array_tasks(os.environ if env is None else env)
    if not tasks:
        looked = ", ".join(name for name, _ in SCHEDULERS)
        raise UsageError(
            f"--shard {value}: this process is not a task of an array job (none of {looked} is set); give the "
            "slice itself: --shard K/N (in an array job whose scheduler gives no count: --shard auto/N)"
        )
    for task in tasks:
        if count is not None and task.count is not None and task.count != count:
            raise UsageError(
                f"--shard {value}: {task.owner()} array has {task.count} tasks ({task.span(task.count)}), not "
                f"{count}; submit {count} tasks, or give the slice itself: --shard K/N"
            )
    told = count if count is not None else next((t.count for t in tasks if t.count is not None), None)
    (first, shard), *others = [(task, task.shard(told, value)) for task in tasks]
    for task, other in others:
        if other != shard:
            raise UsageError(
                f"--shard {value}: {first.describe(shard[1])} makes this shard {shard[0]}/{shard[1]}, but "
                f"{task.describe(other[1])} makes it {other[0]}/{other[1]}; unset one scheduler's variables, or "
                "give --shard K/N"
            )
    return shard, first.describe(shard[1])


def _count(value: str, text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise UsageError(f"--shard {value!r}: give auto, or auto/N with N the array's count, e.g. auto/8") from None
    if count < 1:
        raise UsageError(f"--shard {value}: N must be at least 1")
    return count


def shard_note(shard: Shard | None, source: str | None) -> str:
    """``shard 3/8 (from Slurm's array task 2 of 0–7)`` for a run's header; "" without a shard."""
    if shard is None:
        return ""
    return f"shard {shard[0]}/{shard[1]}" + (f" (from {source})" if source else "")
