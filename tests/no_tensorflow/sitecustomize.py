"""On PYTHONPATH, makes `import tensorflow` fail: simulates a GPU machine that has only JAX."""
import sys


class _NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"No module named {name!r} (blocked to simulate a machine without TensorFlow)")
        return None


sys.meta_path.insert(0, _NoTensorFlow())
