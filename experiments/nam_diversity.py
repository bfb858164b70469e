"""Member diversity of the finished methods of one or more study workdirs, as one table.

  python experiments/nam_diversity.py WORKDIR [WORKDIR ...] [--teacher=ensemble4] [--reference=nam_kd]

For studies with the same config and seeds split over workdirs (e.g. Nam et al.'s students
trained by separate commands): rows come from each workdir's results.json and predictions
(churn_jax.protocol.diversity); a method found in several workdirs is taken from the first.
The reference column compares by run index, so the workdirs must share their seeds.
"""

import argparse
import json
import os
import sys

from churn_jax.protocol import diversity


def table(workdirs, teacher: str, reference: str) -> str:
  rows, seen = [], set()
  for workdir in workdirs:
    with open(os.path.join(workdir, "results.json")) as f:
      results = json.load(f)
    for row in diversity.study_rows(workdir, results):
      if row["method"] not in seen:
        seen.add(row["method"])
        rows.append(row)
  if reference and reference not in seen:
    raise ValueError(f"reference {reference!r} has no member predictions in {workdirs}")
  return diversity.rows_markdown(rows, teacher, reference or None)


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdirs", nargs="+")
  parser.add_argument("--teacher", default="ensemble4")
  parser.add_argument("--reference", default="nam_kd")
  args = parser.parse_args(argv[1:])
  try:
    print(table(args.workdirs, args.teacher, args.reference), end="")
  except (OSError, ValueError, KeyError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  main(sys.argv)
