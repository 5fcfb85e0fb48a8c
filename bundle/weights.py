"""Shipped-weights file format: ``{"state_dict", "arch", "extra"}`` written atomically with ``torch.save``.

``arch`` records the constructor arguments the weights were trained with, so loading weights into a network
of another architecture (or task) fails with a clear message instead of a torch size-mismatch traceback.
The autoencoder's ``extra`` holds its latent ``scale_factor`` so inference never needs training data.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bundle.atomic import atomic_write
from bundle.errors import UserError, flag


class WeightsError(UserError):
    """Missing, corrupt or mismatching weights; the message names the file."""


REPO_ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger(__name__)


def shipped_files(root: str | Path = REPO_ROOT) -> set[Path]:
    """The shipped weights: every ``path`` listed in ``<root>/large_files.yml`` (resolved)."""
    import yaml

    listing = Path(root) / "large_files.yml"
    if not listing.is_file():
        return set()
    entries = (yaml.safe_load(listing.read_text()) or {}).get("large_files", [])
    return {(Path(root) / e["path"]).resolve() for e in entries if "path" in e}


def guard_shipped(path: str | Path, overwrite_shipped: bool = False, backup: bool = True) -> None:
    """Refuse to replace a shipped weights file (``large_files.yml``) unless ``overwrite_shipped``; with it, the old
    file is moved to ``<name>.bak`` (an older backup is replaced) when ``backup``. Training calls it with
    ``backup=False`` at its start (refuse before hours of work, not after) and ``save_weights`` before writing."""
    path, overwrite_shipped = Path(path), flag(overwrite_shipped, "overwrite_shipped")
    if path.resolve().parent == (REPO_ROOT / "models").resolve() and path.resolve() not in shipped_files(REPO_ROOT) \
            and not overwrite_shipped:
        raise WeightsError(f"refusing to write {path} into the shipped models folder: inference there loads only the "
                           "files large_files.yml lists; export elsewhere (--export_dir, default <output_dir>/models) "
                           "or pass --overwrite_shipped true")
    if path.resolve() not in shipped_files(REPO_ROOT) or not path.exists():
        return
    if not overwrite_shipped:
        raise WeightsError(f"refusing to replace the shipped weights {path} (listed in large_files.yml): export "
                           "elsewhere (--export_dir, default <output_dir>/models) or pass --overwrite_shipped true "
                           "(keeps the old file as .bak)")
    if backup:
        bak = path.with_name(path.name + ".bak")
        bak.unlink(missing_ok=True)
        path.rename(bak)
        print(f"kept the replaced shipped weights as {bak}")


def file_md5(path: str | Path) -> str:
    """md5 of a file, read once per (path, size, mtime): loading and every output's sidecar ask for the same files."""
    st = Path(path).stat()
    return _md5(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _md5(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def save_weights(path: str | Path, network: nn.Module, arch: dict[str, Any], overwrite_shipped: bool = False,
                 **extra: Any) -> Path:
    """Write ``network``'s weights with its ``arch`` description to ``path`` atomically (temp file + rename); a
    shipped file is only replaced with ``overwrite_shipped`` (see :func:`guard_shipped`)."""
    path = Path(path)
    guard_shipped(path, overwrite_shipped)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = network.module if hasattr(network, "module") else network
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    atomic_write(path, lambda tmp: torch.save({"state_dict": state, "arch": dict(arch), "extra": extra}, tmp))
    logger.info(f"saved {path}" + (f" (latent scale factor {extra['scale_factor']:.4f})" if "scale_factor" in extra else ""))
    return path


def read_weights(path: str | Path, arch: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a weights file ``{"state_dict", "arch", "extra"}`` without loading it into a network; a clear error when
    it is missing, unreadable, or was trained with another value of a key ``arch`` names (e.g. ``{"task": "lge"}``)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or not a torch file
        raise WeightsError(f"cannot read weights file {path}: {e}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise WeightsError(f"{path} is not a CMRDiff weights file (no 'state_dict')")
    stored = ckpt.get("arch", {})
    for k, v in (arch or {}).items():
        if k in stored and _norm(stored[k]) != _norm(v):
            raise WeightsError(f"{path} was trained with {k}={stored[k]!r}, but the config asks for {k}={v!r}")
    return ckpt


def stored_extra(path: str | Path, arch: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``extra`` dict of a weights file (plus its stored ``arch``), read without loading any network: e.g. the
    autoencoder's latent ``scale_factor`` as a config value, while loading is a workflow step."""
    ckpt = read_weights(path, arch)
    return dict(ckpt.get("extra", {}), arch=ckpt.get("arch", {}))


def load_weights(path: str | Path, network: nn.Module, arch: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load ``path`` into ``network`` and return its ``extra`` dict (plus the stored ``arch``).

    When ``arch`` is given, every key it names must match the stored ``arch`` (e.g. ``{"task": "lge"}``).
    """
    ckpt = read_weights(path, arch)
    stored = ckpt.get("arch", {})
    net = network.module if hasattr(network, "module") else network
    try:
        net.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as e:
        msg = str(e).splitlines()[0]
        raise WeightsError(f"{path} does not fit the configured {type(net).__name__} ({msg}); "
                           f"stored arch: {stored}") from None
    return dict(ckpt.get("extra", {}), arch=stored)


def load_autoencoder(network: nn.Module, path: str | Path, arch: dict[str, Any] | None = None) -> float:
    """The explicit stage-1 loading step of a workflow's ``initialize``: load the autoencoder's weights into
    ``network``, switch it to eval mode, log the file and return its latent scale factor."""
    extra = load_weights(path, network, arch)
    if "scale_factor" not in extra:
        raise WeightsError(f"{path} has no latent scale_factor: not an exported autoencoder")
    network.eval()
    logger.info(f"stage 1: autoencoder weights loaded from {path} (latent scale factor {extra['scale_factor']:.4f})")
    return float(extra["scale_factor"])


def _norm(v: Any) -> Any:
    return [_norm(x) for x in v] if isinstance(v, (list, tuple)) else v


def load_best(network: nn.Module, best_checkpoint: str | Path) -> None:
    """Load a training run's best checkpoint into ``network``; a clear error when training stopped (say, at its
    time limit) before any validation wrote one."""
    if not Path(best_checkpoint).is_file():
        raise WeightsError(f"no best checkpoint {str(best_checkpoint)!r}: training stopped before its first "
                           "validation (raise time_limit_s or lower val_interval); nothing was exported")
    network.load_state_dict(torch.load(best_checkpoint, map_location="cpu", weights_only=True))


def export_best(network: nn.Module, best_checkpoint: str | Path, path: str | Path, arch: dict[str, Any],
                scale_factor: float | None = None, which: str = "best", overwrite_shipped: bool = False) -> Path:
    """Write ``network`` as shipped weights: with ``which="best"`` after loading the best training checkpoint into
    it, with ``which="last"`` as it is (the end of training). The latent ``scale_factor`` it was trained with is
    stored too (inference checks it against the autoencoder's); image-space models have none."""
    if which not in ("best", "last"):
        raise ValueError(f"export_checkpoint must be 'best' or 'last', got {which!r}")
    net = network.module if hasattr(network, "module") else network
    if which == "best":
        load_best(net, best_checkpoint)
    extra = {} if scale_factor is None else {"scale_factor": float(scale_factor)}
    return save_weights(path, net, arch, overwrite_shipped=overwrite_shipped, **extra)


def diffusion_weights_path(models_dir: str | Path, profile: str, task: str, prefix: str = "diffusion") -> Path:
    """The weights for ``task``: ``<prefix>_<profile>_<task>.pt`` if present, else the all-task
    ``<prefix>_<profile>_any.pt``; a clear error naming both when neither exists. In the bundle's own ``models/``
    only the files large_files.yml lists count, so no file a training run left there can shadow the shipped weights
    (name such a file explicitly, e.g. ``--diffusion_weights <path>``, to use it)."""
    models_dir = Path(models_dir)
    tried = [models_dir / f"{prefix}_{profile}_{task}.pt", models_dir / f"{prefix}_{profile}_any.pt"]
    shipped_dir = models_dir.resolve() == (REPO_ROOT / "models").resolve()
    listed = shipped_files(REPO_ROOT) if shipped_dir else set()
    for p in tried:
        if p.is_file() and shipped_dir and p.resolve() not in listed:
            print(f"note: {p} is not a shipped file (large_files.yml) and is ignored; pass it explicitly to use it")
            continue
        if p.is_file():
            return p
    raise WeightsError(f"no {prefix} weights for task {task!r}, profile {profile!r}: looked for "
                       f"{', '.join(map(str, tried))}")


def load_diffusion(path: str | Path, network: nn.Module, arch: dict[str, Any], task: str,
                   scale_factor: float) -> dict[str, Any]:
    """Load diffusion weights for ``task``: the file must hold a model of that task or the all-task ``any``
    model, and must have been trained on latents with the autoencoder's ``scale_factor``."""
    extra = load_weights(path, network, arch)
    print(f"diffusion weights: {path} (md5 {file_md5(path)})")
    stored = extra["arch"].get("task")
    if stored not in (task, "any"):
        raise WeightsError(f"{path} is a model for task {stored!r}; it cannot synthesize task {task!r}")
    sf = extra.get("scale_factor")
    if sf is not None and abs(float(sf) - float(scale_factor)) > 1e-4 * max(1.0, abs(float(sf))):
        raise WeightsError(f"{path} was trained on latents with scale factor {sf:.5f}, but the autoencoder's is "
                           f"{scale_factor:.5f}: the diffusion model and the autoencoder do not belong together")
    return extra
