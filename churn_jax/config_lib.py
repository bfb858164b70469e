"""Helpers shared by the experiment configs in experiments/ (argument strings, method entries).

Config files take an argument string, big_vision style: `--config=experiments/mnist1d.py:quick`
or `...:methods=baseline+codistill,runs=3`. `parse_arg` turns it into a ConfigDict.
"""

from typing import Any

import ml_collections

DEFAULT_METHODS = "baseline,entropy,skl,codistill,codistill_entropy"


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses "a,b=1,c=x" into {a: True, b: 1, c: 'x'}; keys must be among `defaults`."""
  out = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ValueError(f"unknown config argument {key!r}; known: {', '.join(sorted(defaults))}")
    default = defaults[key]
    if not sep:
      out[key] = True
    elif isinstance(default, bool):
      out[key] = value.lower() in ("1", "true", "yes")
    elif isinstance(default, int):
      out[key] = int(value)
    elif isinstance(default, float):
      out[key] = float(value)
    else:
      out[key] = value
  return out


def rampup(value: float, fraction: float) -> ml_collections.ConfigDict:
  """A coefficient linearly ramped up over the first `fraction` of training."""
  return ml_collections.ConfigDict(dict(kind="linear_rampup", value=value, rampup_fraction=fraction,
                                        rampup_steps=None))


def method_configs(entropy_beta: float, skl_beta: float, codistill_beta: float,
                   rampup_fraction: float = 0.25) -> ml_collections.ConfigDict:
  """Entries for the five core methods of Bhojanapalli et al. 2021.

  The regularised co-distillation ramps both coefficients linearly (App. A: "a linear warmup
  of the regularizer coefficient").
  """
  return ml_collections.ConfigDict({
      "baseline": dict(kind="baseline"),
      "entropy": dict(kind="entropy", beta=entropy_beta),
      "skl": dict(kind="skl", beta=skl_beta),
      "codistill": dict(kind="codistill", num_members=2,
                        beta=rampup(codistill_beta, rampup_fraction)),
      "codistill_entropy": dict(kind="codistill", num_members=2,
                                beta=rampup(codistill_beta, rampup_fraction),
                                entropy_beta=rampup(entropy_beta, rampup_fraction)),
  })
