"""A step with a file this process cannot open is rejected before orbax restores anything.

On several processes the check runs on every host before any collective (checkpoint.py's
resume order); here, on one process, it shows the check itself: one file of the newest step
replaced by a dangling link (an object that lists but does not read) makes the older step
the resume step, with a warning naming the rejected one.
"""

import contextlib
import io
import os
import tempfile

from absl.testing import absltest
import jax.numpy as jnp
import numpy as np

from churn_jax.runtime import checkpoint


class ReadableTest(absltest.TestCase):

  def test_a_file_that_does_not_open_rejects_the_step(self):
    directory = tempfile.mkdtemp()
    state = {"w": jnp.arange(4.0), "b": jnp.ones((2, 3))}
    ckpt = checkpoint.MethodCheckpointer(directory, 2, max_to_keep=2)
    ckpt.save(2, state)
    ckpt.save(4, jax_tree_plus(state, 1.0))
    ckpt.wait()
    self.assertIsNone(ckpt._unreadable(4))  # pylint: disable=protected-access
    victim = next(os.path.join(r, f) for r, _, fs in os.walk(os.path.join(directory, "4"))
                  for f in sorted(fs))
    os.remove(victim)
    os.symlink(os.path.join(directory, "gone"), victim)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      restored, step = ckpt.restore_latest(state)
    self.assertEqual(step, 2)
    np.testing.assert_array_equal(restored["w"], state["w"])
    self.assertIn(f"checkpoint {os.path.join(directory, '4')} is rejected: a file does not read (",
                  out.getvalue())
    ckpt.close()


def jax_tree_plus(tree, x):
  return {k: v + x for k, v in tree.items()}


if __name__ == "__main__":
  absltest.main()
