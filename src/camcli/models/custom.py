"""The user's own code: ``--arch path/to/file.py:ClassName`` or ``--arch package.module:factory`` (with
``--arch-args`` JSON keyword arguments) builds their class; ``--code-path DIR`` puts a folder on the import path
for that and for the classes a ``--trust-checkpoint`` pickle imports.

This runs the user's code, by their choice (an ``--arch`` of this form, or ``--trust-checkpoint``); nothing here
runs for a plain model name or a weights-only checkpoint.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from ..checks import first_words, json_value
from ..errors import CheckpointError, ModelError, UsageError

FORM = "use path/to/file.py:ClassName or package.module:factory"
GUARD = 'put the code that should run only as a script under `if __name__ == "__main__":`'
# sys.argv and sys.stdout are the process's: one piece of the user's code runs at a time
_USER_CODE = threading.RLock()


def is_custom_arch(spec: str | None) -> bool:
    """``file.py:Name`` or ``package.module:name`` (not ``timm:NAME``/``hf:NAME``, not a Windows drive)."""
    if not spec or ":" not in spec:
        return False
    target, _, _attr = spec.strip().rpartition(":")
    if target.lower() in ("timm", "hf") or len(target) == 1:
        return False
    return target.endswith(".py") or bool(re.fullmatch(r"[A-Za-z_][\w.]*", target))


@contextmanager
def import_path(*folders: str | Path | None) -> Iterator[None]:
    """Put ``folders`` (the ones given) first on ``sys.path`` for the block."""
    added = [str(Path(f).expanduser().resolve()) for f in folders if f]
    for f in reversed(added):
        sys.path.insert(0, f)
    try:
        yield
    finally:
        for f in added:
            if f in sys.path:
                sys.path.remove(f)


@contextmanager
def user_code(name: str, what: str) -> Iterator[None]:
    """Run the user's code (importing their file or module, calling their class or factory, unpickling a trusted
    model that imports their modules) contained: ``sys.argv`` is ``[name]`` alone, so a script that parses its
    arguments when imported sees none of camcli's; what it prints goes to stderr, so ``--json`` keeps stdout for
    records; and a ``sys.exit()`` is a one-line :class:`ModelError` (``what`` is its subject), not camcli's exit.
    Ctrl-C is left alone."""
    with _USER_CODE:
        argv = sys.argv
        sys.argv = [name]
        try:
            with redirect_stdout(sys.stderr):
                yield
        except SystemExit as e:
            code = 0 if e.code is None else e.code
            raise ModelError(f"{what}: its code called sys.exit({code!r}) (a script run on import?); {GUARD}") from None
        finally:
            sys.argv = argv


def said(e: BaseException) -> str:
    """``ExcType: its first line`` (shortened): an exception of the user's code, in one line."""
    line = first_words(e)
    return type(e).__name__ if line == type(e).__name__ else f"{type(e).__name__}: {line}"


def parse_arch_args(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    shown = repr(text) if len(text) <= 80 else repr(text[:60]) + f"… ({len(text)} characters)"
    try:
        value = json_value(text)
    except ValueError as e:
        why = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        raise UsageError(f"--arch-args {shown} is not JSON ({why}); write e.g. '{{\"num_classes\": 7}}'") from None
    if not isinstance(value, dict):
        raise UsageError(f"--arch-args {shown}: give a JSON object of keyword arguments, e.g. '{{\"a\": 1}}'")
    return value


def _import(target: str, code_path: str | None) -> ModuleType:
    if code_path and not Path(code_path).expanduser().is_dir():
        raise UsageError(f"--code-path '{code_path}' is not a folder")
    if target.endswith(".py"):
        file = Path(target).expanduser()
        if not file.is_file():
            raise UsageError(f"--arch: no file '{target}'; {FORM}")
        name = "camcli_user_" + re.sub(r"\W", "_", file.stem)
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise UsageError(f"--arch: cannot import '{target}' as Python; {FORM}")
        module = importlib.util.module_from_spec(spec)
        # the file's own sibling imports work
        with import_path(code_path, file.parent), user_code(str(file), f"--arch: importing {target}"):
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as e:
                sys.modules.pop(name, None)
                raise ModelError(f"--arch: running {target} raised {said(e)}") from None
            except BaseException:  # sys.exit() (user_code says it in one line) or Ctrl-C
                sys.modules.pop(name, None)
                raise
        return module
    with import_path(code_path), user_code(target, f"--arch: importing {target}"):
        try:
            return importlib.import_module(target)
        except ModuleNotFoundError as e:
            raise ModelError(
                f"--arch: cannot import '{e.name}'; pass --code-path DIR, the folder that holds it, or install it"
            ) from None
        except Exception as e:
            raise ModelError(f"--arch: importing {target} raised {said(e)}") from None


def build_custom(spec: str, arch_args: str | None = None, code_path: str | None = None) -> nn.Module:
    """The ``nn.Module`` the user's class or factory builds (runs their code)."""
    target, _, attr = spec.strip().rpartition(":")
    if not target or not attr.isidentifier():
        raise UsageError(f"--arch {spec!r}: {FORM}")
    kwargs = parse_arch_args(arch_args)
    module = _import(target, code_path)
    if not hasattr(module, attr):
        public = sorted(n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module))
        listed = f"; its nn.Module classes: {', '.join(public[:8])}" if public else ""
        raise UsageError(f"--arch: {target} has no '{attr}'{listed}")
    folder = Path(target).parent if target.endswith(".py") else None
    try:
        with import_path(code_path, folder), user_code(target, f"--arch: calling {attr}() of {target}"):
            built = getattr(module, attr)(**kwargs)
    except ModelError:
        raise  # user_code's, for a sys.exit()
    except Exception as e:
        how = f" with --arch-args {json.dumps(kwargs)}" if kwargs else " (pass its arguments with --arch-args JSON)"
        raise ModelError(f"--arch: {attr}(){how} raised {said(e)}") from None
    if not isinstance(built, nn.Module):
        raise ModelError(f"--arch: {attr}() returned a {type(built).__name__}, not a torch nn.Module")
    return built


def explain_unpickling(path: Path, error: Exception) -> CheckpointError:
    """A one-line reason and fix for a trusted pickle whose classes cannot be found."""
    if isinstance(error, ModuleNotFoundError) and error.name:
        top = error.name.split(".")[0]
        return CheckpointError(
            f"{path}: its model class lives in module '{error.name}', which cannot be imported here; pass "
            f"--code-path DIR, the folder that holds {top}/ or {top}.py"
        )
    text = str(error)
    found = re.search(r"Can't get attribute '([\w.]+)' on <module '([\w.]+)'", text)
    if found and found.group(2).split(".")[-1] == "__main__":
        cls = found.group(1)
        return CheckpointError(
            f"{path}: it holds a {cls} defined in the training script itself (__main__), so nothing can import it; "
            f"if {cls} is the model's class, move it into a module and re-save, or save model.state_dict() and "
            f"load it with --arch train.py:{cls}; if it is a setting (an Enum in hyper_parameters), re-save the "
            "state_dict alone"
        )
    if found:
        return CheckpointError(
            f"{path}: module '{found.group(2)}' has no '{found.group(1)}' (another version of the code?); pass the "
            "--code-path of the code the model was saved with"
        )
    return CheckpointError(f"{path}: cannot unpickle ({said(error)})")
