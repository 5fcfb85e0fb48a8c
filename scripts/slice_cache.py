"""Resolve a training workflow's slice sets here and save them to one file, to train on a machine without the
NIfTI files (the GPU machine's copy of the repository is limited to 64 MiB; scripts/device_train_long.sh).

    PYTHONPATH=. python scripts/slice_cache.py OUT.pt --set dataset_dir=../shared/data/myops2020 train_split=train_tune ...

``--set`` takes the same overrides as the training command (values parsed as YAML). OUT.pt holds
``{"train": train#slices, "validate": validate#slices}`` of configs/common.yaml + configs/train_diffusion.yaml: the
same slices the workflow would build, bit for bit. The training command reads them back with
``--train#slices "$torch.load('OUT.pt')['train']" --validate#slices "$torch.load('OUT.pt')['validate']"``.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import yaml
from monai.bundle import ConfigParser

CONFIGS = ["configs/common.yaml", "configs/train_diffusion.yaml"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    a = p.parse_args(argv)
    parser = ConfigParser()
    parser.read_config(CONFIGS)
    for kv in a.set:
        if "=" not in kv:
            print(f"error: --set {kv!r} is not KEY=VALUE", file=sys.stderr)
            return 2
        k, v = kv.split("=", 1)
        parser[k] = yaml.safe_load(v)
    out = {"train": parser.get_parsed_content("train#slices"), "validate": parser.get_parsed_content("validate#slices")}
    tmp = a.out + ".tmp"
    torch.save(out, tmp)
    os.replace(tmp, a.out)
    print(f"wrote {a.out}: {len(out['train'])} training and {len(out['validate'])} validation slices")
    return 0


if __name__ == "__main__":
    sys.exit(main())
